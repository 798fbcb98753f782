"""Where a table came from: the git commit, the device, the date and the command line."""

from __future__ import annotations

import functools
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path


def _git(*args: str, cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", *args], check=False, capture_output=True, text=True, timeout=20, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


RESULTS_DIR = "benchmarks/results"  # what benchmarks write: changes there do not make the code dirty


def git_commit(cwd: Path | None = None) -> str:
    """``git rev-parse --short HEAD``, with ``-dirty`` when tracked files outside ``benchmarks/results/`` have
    uncommitted changes (a running benchmark rewrites its own results files; they are not code). A copy of the tree
    without ``.git`` (a machine the code was shipped to) reports ``$RLGEN_COMMIT``, which the sender sets."""
    cwd = cwd or Path(__file__).resolve().parents[2]
    commit = _git("rev-parse", "--short", "HEAD", cwd=cwd)
    if commit is None:
        given = os.environ.get("RLGEN_COMMIT")
        return f"{given} (from RLGEN_COMMIT; not a git checkout)" if given else "unknown (not a git checkout)"
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ".", f":(exclude){RESULTS_DIR}", cwd=cwd)
    return commit + ("-dirty" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def gpu_names() -> tuple[str, ...]:
    """GPU names from ``nvidia-smi`` (no torch import, no CUDA context); empty without an NVIDIA GPU."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], check=False,
                             capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(line.strip() for line in out.stdout.splitlines() if line.strip()) if out.returncode == 0 else ()


@functools.lru_cache(maxsize=1)
def device_description() -> str:
    """e.g. ``AMD EPYC 7B13 (2 cores)`` or ``... (16 cores) + NVIDIA H100 80GB HBM3``."""
    text = f"{cpu_model()} ({cores()} cores)"
    gpus = gpu_names()
    if gpus:
        text += " + " + ", ".join(f"{gpus.count(g)}x {g}" if gpus.count(g) > 1 else g for g in dict.fromkeys(gpus))
    return text


def hostname() -> str:
    return socket.gethostname()


def command_line(argv: list[str] | None = None) -> str:
    """The rlgen command line as it was typed (``python -m rlgen.run bench ...``, ``... vime ...``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return "python -m rlgen.run " + shlex.join(argv)


def utc_now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
