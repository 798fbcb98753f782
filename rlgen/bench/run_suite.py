"""Running a benchmark suite: ``run_suite(suite, options)`` runs its jobs (skipping finished ones), collects their
results and writes ``results.csv``, ``RESULTS.md`` and the learning-curve plots to ``<out>/<suite>/``. ``rlgen
bench`` calls it with the options of its flags and ``--config`` (:data:`DEFAULTS`)."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlgen.common.errors import UserError

if TYPE_CHECKING:
    from rlgen.bench.aggregate import Cell
    from rlgen.bench.suite import Job, Suite

log = logging.getLogger("rlgen")

#: every option of a suite run, with its default
DEFAULTS: dict[str, Any] = {"out": "benchmarks/results", "seeds": None, "jobs": None, "ray": None, "retries": 1,
                            "job_timeout": None, "budget_scale": 1.0, "device": None, "dry_run": False,
                            "report_only": False, "tasks": None, "resume": None}


def _load(name: str | None, opts: dict[str, Any], given: Collection[str]) -> tuple[Suite, Path]:
    from rlgen.bench.suite import expand, find_suite, parse_seeds, read_suite_file
    from rlgen.common.checkpoint import load_json

    saved: dict[str, Any] = {}
    if opts.get("resume"):
        suite_dir = Path(opts["resume"])
        if not (suite_dir / "suite.json").is_file():
            raise UserError(f"--resume {suite_dir} is not a bench results folder (no suite.json in it); pass the "
                            "folder printed when the suite ran, e.g. benchmarks/results/<suite>")
        saved = load_json(suite_dir / "suite.json", what="bench record")
        if not isinstance(saved, dict) or not isinstance(saved.get("suite"), dict):
            raise UserError(f"{suite_dir / 'suite.json'} holds no suite (its 'suite' entry is missing); it was not "
                            "written by 'rlgen bench': run the suite again into a new --out")
        raw, path = saved["suite"], Path(saved["source"]) if saved.get("source") else None
        for key in ("seeds", "budget_scale", "device"):
            if key not in given and saved.get("options", {}).get(key) is not None:
                opts[key] = saved["options"][key]
        if name:
            raise UserError("give either a SUITE or --resume SUITE_DIR, not both")
    elif name:
        path = find_suite(name)
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


def list_suites() -> None:
    """Print the suites under ``benchmarks/suites/`` with their job counts."""
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


def run_suite(name: str | None, options: dict[str, Any], given: Collection[str] = (),
              command: str | None = None) -> None:
    """Run the suite ``name`` (a name under ``benchmarks/suites/`` or a YAML path; None with ``resume``) with
    ``options`` (:data:`DEFAULTS` for those missing); ``given`` names the options the user set (they win over a
    resumed suite's saved ones); ``command`` is the command line recorded in ``RESULTS.md``. A failed job exits
    with status 1 after the tables are written."""
    from rlgen.bench.aggregate import aggregate, aggregate_normalised
    from rlgen.bench.collect import KEPT_DIR, collect, keep_results
    from rlgen.bench.report import Provenance, plot_curves, write_csv, write_markdown
    from rlgen.bench.runner import LocalBackend, RayBackend, Runner
    from rlgen.bench.state import FAILED, StateFile
    from rlgen.common import provenance
    from rlgen.common.checkpoint import atomic_write_json
    from rlgen.common.device import resolve_device
    from rlgen.common.run_dir import ensure_writable_dir

    opts = {**DEFAULTS, **options}
    if opts["dry_run"] and opts["report_only"]:
        raise UserError("--dry-run and --report-only exclude each other: --dry-run lists the jobs, --report-only "
                        "remakes the tables; give one")
    command = command or provenance.command_line(["bench", *([name] if name else [])])
    suite, suite_dir = _load(name, opts, given)
    selected = _select_tasks(suite, opts["tasks"])
    if opts["dry_run"]:
        _dry_run(suite, suite_dir, selected)
        return
    for warning in suite.warnings:
        log.warning("warning: %s", warning)
    if opts["report_only"] and not (suite_dir / "jobs.json").is_file() and not (suite_dir / KEPT_DIR).is_dir():
        raise UserError(f"nothing to report: no job of suite {suite.name} has run in {suite_dir}; run the suite "
                        "first, or give the --out it ran with")
    if opts["device"] and not opts["ray"] and not opts["report_only"]:  # (a cluster's workers may have a GPU)
        resolve_device(opts["device"])  # --device cuda without CUDA: one line before the suite folder exists
    backend = None
    if opts["ray"] and not opts["report_only"]:  # no Ray, or no cluster: one line before the suite folder exists
        backend = RayBackend(str(opts["ray"]))
    ensure_writable_dir(suite_dir)
    commit = provenance.git_commit()
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
