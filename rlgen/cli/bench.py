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
import sys
from typing import Any

from rlgen.bench.run_suite import DEFAULTS
from rlgen.cli.options import S, check_file_values, nonnegative_int, positive_float, positive_int
from rlgen.common.device import DEVICE_CHOICES


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

    flags = {k: v for k, v in vars(args).items() if k not in ("command", "handler", "parser", "suite", "list")}
    file_cfg = load_config_file(flags.pop("config")) if "config" in flags else {}
    source = f"config file {vars(args).get('config')}"
    check_known_keys(file_cfg, {k: None for k in DEFAULTS if k not in ("dry_run", "report_only", "resume")}, source)
    check_file_values(file_cfg, args.parser, source)
    return {**DEFAULTS, **file_cfg, **flags}


def _command_line(args: argparse.Namespace) -> str:
    from rlgen.common.provenance import command_line

    if sys.argv[1:2] == ["bench"]:
        return command_line(sys.argv[1:])
    argv = ["bench"] + ([args.suite] if args.suite else [])
    for key, value in vars(args).items():
        if key in ("command", "handler", "parser", "suite", "list"):
            continue
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return command_line(argv)


def run(args: argparse.Namespace) -> None:
    from rlgen.bench.run_suite import list_suites, run_suite

    if args.list:
        list_suites()
        return
    opts = _options(args)
    run_suite(args.suite, opts, given=set(vars(args)), command=_command_line(args))
