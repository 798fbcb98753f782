"""The options of ``rlgen bench SUITE``: run a benchmark suite (a grid of commands x tasks x seeds) and tabulate it.

    python -m rlgen.run bench smoke                          # local pool, one job per core
    python -m rlgen.run bench vime-sparse --ray auto         # on the Ray cluster started on this machine
    python -m rlgen.run bench vime-sparse --budget-scale 0.01 --seeds 2   # a quick look
    python -m rlgen.run bench vime-sparse --dry-run          # the job list, what is done, what would run

Results go to ``<out>/<suite>/``: ``results.csv``, ``RESULTS.md``, ``curves*.png``, ``jobs.json`` and
``runs/<job id>/`` (each job's logs and run directory). Running a suite again skips its finished jobs.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from rlgen.bench.run_suite import DEFAULTS
from rlgen.common.device import DEVICE_CHOICES
from rlgen.common.options import Flag

WHAT = [
    Flag("suite", "a suite name under benchmarks/suites/ (see --list) or a path to a suite YAML file", positional=True),
    Flag("list", "list the suites and their job counts, and exit", kind=bool, const=True),
    Flag("seeds", "replace every cell's seeds: a count (5), a list (0,1,2) or a range (0-4); cells marked `shared` "
         "(e.g. the expert GAIL imitates) keep theirs", metavar="SEEDS"),
    Flag("tasks", "run only the jobs on these envs/datasets (comma-separated) and the jobs they need; the tables "
         "still show every finished job of the suite", metavar="NAMES"),
    Flag("budget_scale", "multiply every job's --steps/--epochs by F for a quick look (results go to <out>/<suite>-xF, "
         "never over the full-budget tables)", kind=float, minimum=0, strict=True, metavar="F"),
    Flag("device", "passed to every job (default: each command's own default)", choices=DEVICE_CHOICES),
    Flag("dry_run", "print the jobs (finished, to resume, to run) and their command lines; run nothing", kind=bool,
         const=True),
    Flag("report_only", "run nothing; remake results.csv, RESULTS.md and the plots from the finished jobs", kind=bool,
         const=True)]
WHERE_HOW = [
    Flag("out", "results root: the suite goes to DIR/<suite>/", metavar="DIR"),
    Flag("jobs", "jobs at a time on the local backend (default: one per core; Ray schedules by the cluster's CPUs)",
         kind=int, minimum=1, metavar="N"),
    Flag("ray", "run the jobs as Ray tasks on an existing cluster: 'auto' (the one started on this machine; the "
         "default when --ray has no value) or its ADDRESS (host:port)", const="auto", metavar="ADDRESS"),
    Flag("retries", "run a failed or killed job up to N more times", kind=int, minimum=0, metavar="N"),
    Flag("job_timeout", "kill (and retry) a job that runs longer than this", kind=float, minimum=0, strict=True,
         metavar="SECONDS"),
    Flag("resume", "continue the suite saved in SUITE_DIR (its suite.json: the suite as it was started, with its "
         "--seeds/--budget-scale/--device), even if the suite file changed since; finished jobs are never rerun, "
         "with or without this", metavar="SUITE_DIR"),
    Flag("config", "YAML or JSON file of these options (out, jobs, ray, retries, seeds, ...); flags override it",
         metavar="FILE")]
NOT_IN_FILES = ("suite", "list", "config", "dry_run", "report_only", "resume")  # what a --config file cannot set


def flag_groups(command: str) -> list[tuple[str | None, list[Flag]]]:
    return [("what to run", WHAT), ("where and how", WHERE_HOW)]


def packaged_defaults(command: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    return DEFAULTS, {}, "rlgen/bench/run_suite.py"


def run(command: str, flags: Mapping[str, Any]) -> None:
    """``rlgen bench`` with ``flags`` (the options the user gave, by key): ``--config`` under the flags, over
    :data:`~rlgen.bench.run_suite.DEFAULTS`."""
    from rlgen.bench.run_suite import list_suites, run_suite
    from rlgen.common.config import check_known_keys, load_config_file
    from rlgen.common.options import check_file_values

    if flags.get("list"):
        list_suites()
        return
    options = {key: value for key, value in flags.items() if key not in ("suite", "list", "config")}
    file_cfg = load_config_file(flags["config"]) if "config" in flags else {}
    source = f"config file {flags.get('config')}"
    check_known_keys(file_cfg, {key: None for key in DEFAULTS if key not in NOT_IN_FILES}, source)
    check_file_values(file_cfg, WHAT + WHERE_HOW, source)
    run_suite(flags.get("suite"), {**DEFAULTS, **file_cfg, **options}, given=set(options),
              command=_command_line(flags))


def _command_line(flags: Mapping[str, Any]) -> str:
    """The command line recorded in RESULTS.md: this process's own, or one that gives the same ``flags``."""
    from rlgen.common.options import argv_of
    from rlgen.common.provenance import command_line

    if sys.argv[1:2] == ["bench"]:
        return command_line(sys.argv[1:])
    return command_line(["bench", *argv_of(flags, WHAT + WHERE_HOW)])
