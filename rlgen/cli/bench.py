"""``rlgen bench SUITE``: run a benchmark suite (a grid of commands x tasks x seeds) and tabulate it.

    python -m rlgen.run bench smoke                          # local pool, one job per core
    python -m rlgen.run bench vime-sparse --ray auto         # on the Ray cluster started on this machine
    python -m rlgen.run bench vime-sparse --budget-scale 0.01 --seeds 2   # a quick look
    python -m rlgen.run bench vime-sparse --dry-run          # the job list, what is done, what would run

Results go to ``<out>/<suite>/``: ``results.csv``, ``RESULTS.md``, ``curves*.png``, ``jobs.json`` and
``runs/<job id>/`` (each job's logs and run directory). Running a suite again skips its finished jobs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlgen.cli.options import S, nonnegative_float, nonnegative_int, positive_int
from rlgen.common.device import DEVICE_CHOICES
from rlgen.common.errors import UserError

if TYPE_CHECKING:  # the bench modules load only when the command runs, so `rlgen --help` stays fast
    from rlgen.bench.aggregate import Cell
    from rlgen.bench.suite import Job, Suite

log = logging.getLogger("rlgen")

DEFAULTS: dict[str, Any] = {"out": "benchmarks/results", "seeds": None, "jobs": None, "ray": None, "retries": 1,
                            "job_timeout": None, "budget_scale": 1.0, "device": None, "dry_run": False,
                            "report_only": False, "tasks": None}



def positive_float(text: str) -> float:
    value = nonnegative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", nargs="?", help="a suite name under benchmarks/suites/ (see --list) or a path to "
                                                 "a suite YAML file")
    parser.add_argument("--list", action="store_true", help="list the suites and their job counts, and exit")
    g = parser.add_argument_group("what to run")
    g.add_argument("--seeds", default=S, metavar="SEEDS",
                   help="replace every cell's seeds: a count (5), a list (0,1,2) or a range (0-4); cells marked "
                        "`shared` (e.g. the expert GAIL imitates) keep theirs")
    g.add_argument("--tasks", default=S, metavar="NAMES",
                   help="run only the jobs on these envs/datasets (comma-separated) and the jobs they need; the "
                        "tables still show every finished job of the suite")
    g.add_argument("--budget-scale", dest="budget_scale", type=positive_float, default=S, metavar="F",
                   help="multiply every job's --steps/--epochs by F for a quick look (results go to "
                        "<out>/<suite>-xF, never over the full-budget tables)")
    g.add_argument("--device", choices=DEVICE_CHOICES, default=S, help="passed to every job (default: each "
                   "command's own default)")
    g.add_argument("--dry-run", dest="dry_run", action="store_true", default=S,
                   help="print the jobs (finished, to resume, to run) and their command lines; run nothing")
    g.add_argument("--report-only", dest="report_only", action="store_true", default=S,
                   help="run nothing; remake results.csv, RESULTS.md and the plots from the finished jobs")
    r = parser.add_argument_group("where and how")
    r.add_argument("--out", default=S, metavar="DIR", help="results root (default benchmarks/results): the suite "
                   "goes to DIR/<suite>/")
    r.add_argument("--jobs", type=positive_int, default=S, metavar="N",
                   help="jobs at a time on the local backend (default: one per core; Ray schedules by the "
                        "cluster's CPUs)")
    r.add_argument("--ray", nargs="?", const="auto", default=S, metavar="ADDRESS",
                   help="run the jobs as Ray tasks on an existing cluster: 'auto' (the one started on this "
                        "machine; the default when --ray has no value) or its ADDRESS (host:port)")
    r.add_argument("--retries", type=nonnegative_int, default=S, metavar="N",
                   help="run a failed or killed job up to N more times (default 1)")
    r.add_argument("--job-timeout", dest="job_timeout", type=positive_float, default=S, metavar="SECONDS",
                   help="kill (and retry) a job that runs longer than this")
    r.add_argument("--resume", default=S, metavar="SUITE_DIR",
                   help="continue the suite saved in SUITE_DIR (its suite.json: the suite as it was started, "
                        "with its --seeds/--budget-scale/--device), even if the suite file changed since; "
                        "finished jobs are never rerun, with or without this")
    r.add_argument("--config", default=S, metavar="FILE",
                   help="YAML or JSON file of these options (out, jobs, ray, retries, seeds, ...); flags override it")


# ---------------------------------------------------------------------------------------------- options
def _options(args: argparse.Namespace) -> dict[str, Any]:
    from rlgen.common.config import check_known_keys, load_config_file

    flags = {k: v for k, v in vars(args).items() if k not in ("command", "handler", "suite", "list")}
    file_cfg = load_config_file(flags.pop("config")) if "config" in flags else {}
    check_known_keys(file_cfg, {k: None for k in DEFAULTS if k not in ("dry_run", "report_only")},
                     f"config file {vars(args).get('config')}")
    return {**DEFAULTS, **file_cfg, **flags}


def _load(args: argparse.Namespace, opts: dict[str, Any]) -> tuple[Suite, Path]:
    from rlgen.bench.suite import expand, find_suite, parse_seeds, read_suite_file

    saved: dict[str, Any] = {}
    if opts.get("resume"):
        suite_dir = Path(opts["resume"])
        if not (suite_dir / "suite.json").is_file():
            raise UserError(f"--resume {suite_dir} is not a bench results folder (no suite.json in it); pass the "
                            "folder printed when the suite ran, e.g. benchmarks/results/<suite>")
        saved = json.loads((suite_dir / "suite.json").read_text())
        raw, path = saved["suite"], Path(saved["source"]) if saved.get("source") else None
        for key in ("seeds", "budget_scale", "device"):
            if key not in vars(args) and saved.get("options", {}).get(key) is not None:
                opts[key] = saved["options"][key]
        if args.suite:
            raise UserError("give either a SUITE or --resume SUITE_DIR, not both")
    elif args.suite:
        path = find_suite(args.suite)
        raw = read_suite_file(path)
        if opts["report_only"] and opts["seeds"] is None:
            # the tables of the jobs that ran in the folder (e.g. a folder of extra seeds), not of the suite's seeds
            opts["seeds"] = _seeds_that_ran(_suite_dir(opts["out"], str(raw.get("name")), float(opts["budget_scale"])))
    else:
        raise UserError("no SUITE given; name one (see --list) or pass --resume SUITE_DIR")
    seeds = opts["seeds"]
    if isinstance(seeds, str):
        seeds = parse_seeds(seeds)
    elif isinstance(seeds, int):
        seeds = parse_seeds(str(seeds))
    elif seeds is not None and not (isinstance(seeds, list) and seeds and all(isinstance(x, int) for x in seeds)):
        raise UserError(f"seeds must be a count, a list of integers or a string like 0-4, not {seeds!r}")
    opts["seeds"] = seeds
    extra = {"device": opts["device"]} if opts.get("device") else None
    suite = expand(raw, path, seeds, float(opts["budget_scale"]), extra)
    scale = float(opts["budget_scale"])
    suite_dir = Path(opts["resume"]) if saved else _suite_dir(opts["out"], suite.name, scale)
    return suite, suite_dir


def _seeds_that_ran(suite_dir: Path) -> list[int] | None:
    """The seeds of the jobs in a suite folder's ``jobs.json`` (all the parts a suite ran in), or ``None``."""
    from rlgen.bench.state import StateFile

    seeds = set()
    for record in StateFile(suite_dir / "jobs.json").records.values():
        with contextlib.suppress(ValueError, IndexError, TypeError, AttributeError):  # a job never launched: no argv
            seeds.add(int(record.argv[record.argv.index("--seed") + 1]))
    return sorted(seeds) or None


def _suite_dir(out: str | Path, name: str, budget_scale: float) -> Path:
    """Where a suite's results go: ``<out>/<name>``, or ``<out>/<name>-x<F>`` for a ``--budget-scale`` run."""
    return Path(out) / (name + ("" if budget_scale == 1 else f"-x{budget_scale:g}"))


def _list_suites() -> None:
    from rlgen.bench.suite import available_suites, load_suite, suites_dir

    print(f"suites in {suites_dir()}:")
    for name in available_suites():
        try:
            suite = load_suite(name)
            first = suite.description.split(". ")[0].rstrip(".")
            print(f"  {name:<14} {len(suite.jobs):>4} jobs  {first[:100] + ('...' if len(first) > 100 else '')}")
        except UserError as exc:
            print(f"  {name:<14} (invalid: {exc})")


def _select_tasks(suite: Suite, tasks: str | list[str] | None) -> list[Job]:
    """The suite's jobs on ``tasks`` (comma-separated envs/datasets; None: every job), with the jobs they depend on."""
    if tasks is None:
        return list(suite.jobs)
    names = [t.strip() for t in tasks.split(",")] if isinstance(tasks, str) else [str(t) for t in tasks]
    known = sorted({job.task for job in suite.jobs if job.task is not None})
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise UserError(f"--tasks {','.join(unknown) or tasks!r}: not a task of suite {suite.name}; "
                        f"use some of {', '.join(known)}")
    by_id = {job.id: job for job in suite.jobs}
    wanted = {job.id for job in suite.jobs if job.task in names}
    pending = list(wanted)
    while pending:  # a selected job's dependencies run too (e.g. the expert a GAIL job imitates)
        for dep in by_id[pending.pop()].deps:
            if dep not in wanted:
                wanted.add(dep)
                pending.append(dep)
    return [job for job in suite.jobs if job.id in wanted]


def _dry_run(suite: Suite, suite_dir: Path, jobs: list[Job]) -> None:
    from rlgen.bench.collect import kept_result
    from rlgen.bench.execute import finished_run_dir, resumable_run_dir

    runs = suite_dir / "runs"
    counts = {"done": 0, "resume": 0, "run": 0}
    print(f"suite {suite.name}: {len(jobs)} of its {len(suite.jobs)} jobs -> {suite_dir}")
    for job in jobs:
        if finished_run_dir(runs / job.id) or kept_result(suite_dir, job.id):
            tag = "done"
        elif resumable_run_dir(runs / job.id):
            tag = "resume"
        else:
            tag = "run"
        counts[tag] += 1
        needs = f"  (after {', '.join(job.deps)})" if job.deps else ""
        print(f"  [{tag:>6}] {job.id}: {job.describe()}{needs}")
    print(f"{counts['done']} finished, {counts['resume']} to resume from a checkpoint, {counts['run']} to run")
    for warning in suite.warnings:
        print(f"warning: {warning}")


def _command_line(args: argparse.Namespace) -> str:
    from rlgen.bench.provenance import command_line

    if sys.argv[1:2] == ["bench"]:
        return command_line(sys.argv[1:])
    argv = ["bench"] + ([args.suite] if args.suite else [])
    for key, value in vars(args).items():
        if key in ("command", "handler", "suite", "list"):
            continue
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return command_line(argv)


# --------------------------------------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> None:
    from rlgen.bench import provenance
    from rlgen.bench.aggregate import aggregate, aggregate_normalised
    from rlgen.bench.collect import collect, keep_results
    from rlgen.bench.report import Provenance, plot_curves, write_csv, write_markdown
    from rlgen.bench.runner import LocalBackend, RayBackend, Runner
    from rlgen.bench.state import FAILED, StateFile
    from rlgen.common.checkpoint import atomic_write_json
    from rlgen.common.run_dir import ensure_writable_dir

    if args.list:
        _list_suites()
        return
    opts = _options(args)
    suite, suite_dir = _load(args, opts)
    selected = _select_tasks(suite, opts["tasks"])
    if opts["dry_run"]:
        _dry_run(suite, suite_dir, selected)
        return
    for warning in suite.warnings:
        log.warning("warning: %s", warning)
    backend = None
    if opts["ray"] and not opts["report_only"]:  # no Ray, or no cluster: one line before the suite folder exists
        backend = RayBackend(str(opts["ray"]))
    ensure_writable_dir(suite_dir)
    commit = provenance.git_commit()
    command = _command_line(args)
    saved_path = suite_dir / "suite.json"
    last_run = {}
    if saved_path.is_file():  # what ran the jobs, for a --report-only table
        try:
            last_run = json.loads(saved_path.read_text()).get("last_run") or {}
        except (OSError, json.JSONDecodeError):
            last_run = {}
    if not opts["report_only"]:
        if backend is None:
            backend = LocalBackend(int(opts["jobs"] or provenance.cores()))
        last_run = {"command": command, "backend": backend.description, "date": provenance.utc_now()}
    if backend is not None or not saved_path.is_file():  # a report leaves the record of how the jobs ran alone
        atomic_write_json(saved_path, {
            "suite": suite.raw, "source": str(suite.path) if suite.path else None, "last_run": last_run,
            "options": {"seeds": opts["seeds"], "budget_scale": opts["budget_scale"], "device": opts["device"]}})
    if backend is not None:
        log.info("suite %s: %d jobs on the %s; results in %s", suite.name, len(selected), backend.description,
                 suite_dir)
        Runner(selected, suite_dir, backend, retries=int(opts["retries"]),
               job_timeout=opts["job_timeout"], commit=provenance.git_commit, command=command).run()

    state = StateFile(suite_dir / "jobs.json")
    records = [state.get(job.id) for job in suite.jobs]
    samples = collect(suite.jobs, keep_results(suite.jobs, suite_dir),
                      failed={r.id for r in records if r.status == FAILED})
    cells = aggregate(samples)
    overall = aggregate_normalised(cells)
    write_csv(cells, suite_dir / "results.csv")
    plots = plot_curves(cells, suite_dir, title=suite.name)
    remade_by = None
    if backend is None and last_run.get("command"):
        command, remade_by = last_run["command"], command
    prov = Provenance(command=command, commit=commit, device=provenance.device_description(),
                      backend=last_run.get("backend", "none (nothing has run)"), date=provenance.utc_now(),
                      remade_by=remade_by)
    md = write_markdown(suite.name, suite.description, cells, overall, records, prov, plots,
                        suite_dir / "RESULTS.md", suite.warnings)
    _print_summary(cells)
    print(f"results: {suite_dir} (RESULTS.md, results.csv, {', '.join(p.name for p in plots) or 'no plots'}, "
          "jobs.json, finished/, runs/)")
    failed = [r for r in records if r.status == "failed"]
    if failed:
        print(f"rlgen bench: {len(failed)} of {len(records)} jobs failed; see the 'Failed jobs' section of {md} "
              f"and runs/<job>/stderr.log", file=sys.stderr)
        raise SystemExit(1)


def _print_summary(cells: Sequence[Cell]) -> None:
    from rlgen.bench.report import fmt, params_text

    width = max((len(c.label) for c in cells), default=5)
    task_width = max((len(c.task + params_text(c.params)) + (3 if c.params else 0) for c in cells), default=4)
    for c in cells:
        task = c.task + (f" ({params_text(c.params)})" if c.params else "")
        score = (f"{fmt(c.score.mean)} ± {fmt(c.score.std)} [{fmt(c.score.ci_low)}, {fmt(c.score.ci_high)}]"
                 if c.score.n else "failed" if c.n_failed else "not run" if c.n_not_run else "n/a")
        print(f"{c.label:<{width}}  {task:<{task_width}}  {c.metric}: {score}  ({c.score.n} seed"
              f"{'' if c.score.n == 1 else 's'}"
              f"{f', {c.n_failed} failed' if c.n_failed else ''}{f', {c.n_not_run} not run' if c.n_not_run else ''})")
