"""GAIL's sample efficiency (issue #23): the normalised return at fixed env-step budgets, per env and seed.

Each run is ``rlgen gail`` with its packaged defaults (the ``rlgen`` preset on MuJoCo, or ``--preset paper``), 4 expert
trajectories, evaluated every ``--eval-every`` env steps on 10 deterministic episodes (``eval/mean_reward`` in
progress.csv) and at the end (summary.json). Scores are normalised per run: its own random-policy return 0, the
demonstrations' mean return 1 (as summary.json's ``normalised_return``).

    # new runs, one after another (about 5 min each on one core of the project's 2-core VM)
    python benchmarks/gail_sample_efficiency.py --envs Hopper-v5 HalfCheetah-v5 --seeds 0 1 2

    # table runs that already exist (e.g. started by hand with --config holding eval_every: 250000)
    python benchmarks/gail_sample_efficiency.py --from-runs runs/gail-rlgen-1M/gail-*

The table goes to stdout and, with the command, commit, CPU and date, to ``benchmarks/results/gail/sample-efficiency/``.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rlgen.common.errors import UserError
from rlgen.common.memory import keep_freed_memory
from rlgen.common.provenance import device_description, git_commit, utc_now
from rlgen.imitation.config import resolve
from rlgen.imitation.pipeline import train_gail

ROOT = Path(__file__).resolve().parents[1]
EXPERTS = ROOT / "benchmarks" / "results" / "gail" / "experts"
RESULTS = ROOT / "benchmarks" / "results" / "gail" / "sample-efficiency"


def run_gail(env: str, seed: int, args: argparse.Namespace) -> Path:
    """``rlgen gail`` on ``env`` with the committed demonstrations; its run directory."""
    out = Path(args.out)
    before = set(out.glob(f"gail-{env}-s{seed}-*"))
    options = {"env": env, "demos": str(EXPERTS / env / "demos.npz"), "trajectories": args.trajectories,
               "steps": args.steps, "seed": seed, "out": str(out), "eval_every": args.eval_every,
               **({"preset": args.preset} if args.preset else {})}
    print(f"running: rlgen gail with {options}", file=sys.stderr, flush=True)
    try:
        train_gail(resolve("gail", options))
    except UserError as exc:
        raise SystemExit(f"rlgen gail failed on {env} seed {seed}: {exc}") from None
    (run,) = set(out.glob(f"gail-{env}-s{seed}-*")) - before
    return run


def row_of(run: Path) -> dict[str, Any]:
    """A run's normalised return at each evaluation and at the end."""
    config = json.loads((run / "config.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    low, high = summary["random_return_mean"], summary["expert_return_mean"]

    def normalise(value: float) -> float:
        return (value - low) / (high - low)

    curve = {}
    with open(run / "progress.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row.get("eval/mean_reward"):
                curve[int(float(row["time/total_timesteps"]))] = round(normalise(float(row["eval/mean_reward"])), 3)
    sessions = json.loads((run / "provenance.json").read_text()).get("sessions", [{}])
    eta = float((config.get("vime") or {}).get("eta", 0.0))
    env = summary["env"] + (f" +VIME {eta:g}" if eta else "")  # GAIL with VIME's bonus is a cell of its own
    return {"env": env, "seed": summary["seed"], "preset": config.get("preset", "paper"), "vime_eta": eta,
            "run_commit": sessions[0].get("commit"), "run_started": sessions[0].get("started"),
            "algo": summary["algo"], "trajectories": summary["trajectories"], "expert_pairs": summary["expert_pairs"],
            "steps": summary["steps"], "normalised_at": curve, "final_normalised": round(summary["normalised_return"], 3),
            "final_return": round(summary["eval_return_mean"], 1), "wall_clock_s": summary["wall_clock_s"],
            "run": str(run.relative_to(ROOT) if run.is_relative_to(ROOT) else run)}


def table(rows: list[dict[str, Any]]) -> str:
    budgets = sorted({b for r in rows for b in r["normalised_at"]})
    head = ["env", "seed", *(f"{b // 1000}k" for b in budgets), "final (summary)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: (r["env"], r["seed"])):
        cells = [r["env"], str(r["seed"]), *(f"{r['normalised_at'].get(b, float('nan')):.3f}" for b in budgets),
                 f"{r['final_normalised']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    for env in sorted({r["env"] for r in rows}):
        of_env = [r for r in rows if r["env"] == env]

        def mean(values: list[float]) -> str:
            if not values:
                return "n/a"
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"**{statistics.mean(values):.3f}** ± {sd:.3f}"

        cells = [f"{env} mean of {len(of_env)}", "", *(mean([r["normalised_at"][b] for r in of_env
                                                            if b in r["normalised_at"]]) for b in budgets),
                 mean([r["final_normalised"] for r in of_env])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=["Hopper-v5", "HalfCheetah-v5"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--eval-every", type=int, default=250_000)
    parser.add_argument("--trajectories", type=int, default=4)
    parser.add_argument("--preset", choices=("rlgen", "paper", "sac"), default=None, help="default: the packaged one")
    parser.add_argument("--out", default=str(ROOT / "runs" / "gail-sample-efficiency"))
    parser.add_argument("--from-runs", nargs="+", type=Path, default=None, metavar="RUN")
    parser.add_argument("--name", default=None, help="result file name (default: sample-efficiency-<time>)")
    args = parser.parse_args(argv)
    keep_freed_memory()  # as the rlgen command does (rlgen.common.memory: page faults on the relabel path)
    runs = args.from_runs or [run_gail(env, seed, args) for env in args.envs for seed in args.seeds]
    rows = [row_of(run) for run in runs if (run / "summary.json").is_file()]
    text = table(rows)
    print(text)
    record = {"command": "python benchmarks/gail_sample_efficiency.py " + shlex.join(sys.argv[1:] if argv is None
                                                                                       else argv),
              "commit": git_commit(), "device": device_description(), "date": utc_now(), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = args.name or f"sample-efficiency-{time.strftime('%Y%m%d-%H%M%S')}"
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    commits = ", ".join(sorted({str(r["run_commit"]) for r in rows}))
    (RESULTS / f"{name}.md").write_text(f"{text}\n\nTable: `{record['command']}` at {record['commit']}, "
                                        f"{record['device']}, {record['date']}. Runs made at {commits}.\n")
    print(f"saved {RESULTS / name}.json and .md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
