"""Running one job: ``python -m rlgen.run <command> ... --out <runs>/<job id>`` in a subprocess.

The same code runs on the driver (local backend) and on a Ray worker. A job's folder ``<runs>/<job id>/`` holds
``stdout.log``/``stderr.log`` (every attempt, appended) and the command's own run directory; an interrupted
attempt that left a checkpoint is continued with ``--resume <run dir>``.
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rlgen.common.provenance import device_description, hostname

STDERR_TAIL_LINES = 20


@dataclass
class AttemptResult:
    job_id: str
    returncode: int | None  # None: the attempt never ran to an exit code (e.g. a Ray worker died)
    wall_s: float
    finished: bool  # the run directory has summary.json
    run_dir: str | None  # relative to the runs folder
    error: str | None
    stderr_tail: str
    resumed_from: str | None
    host: str
    device: str
    started: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------------------- run directories
def run_dirs(job_dir: Path) -> list[Path]:
    """The command's run directories inside a job folder, oldest first."""
    if not job_dir.is_dir():
        return []
    found = [p for p in job_dir.iterdir() if p.is_dir() and (p / "config.json").is_file()]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def finished_run_dir(job_dir: Path) -> Path | None:
    """The newest run directory with a ``summary.json``: the job is done."""
    done = [p for p in run_dirs(job_dir) if (p / "summary.json").is_file()]
    return done[-1] if done else None


def resumable_run_dir(job_dir: Path) -> Path | None:
    """The newest unfinished run directory with a complete checkpoint (``checkpoints/latest.json``)."""
    partial = [p for p in run_dirs(job_dir) if not (p / "summary.json").is_file()
               and (p / "checkpoints" / "latest.json").is_file()]
    return partial[-1] if partial else None


def _error_line(stderr: str, returncode: int | None, finished: bool) -> str | None:
    if returncode == 0 and finished:
        return None
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    lines = [line.strip() for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line.lower()]  # the CLI's one line, or an exception's
    if returncode == 0:
        return "exited 0 but wrote no summary.json"
    if errors:
        return errors[-1]
    return lines[-1] if lines else f"exit code {returncode}"


def _tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    # tqdm redraws with carriage returns; keep each bar's last state only.
    kept = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]
    return "\n".join([line for line in kept if line.strip()][-lines:])[-4000:]


def job_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment, one intra-op thread per job (jobs run in parallel, one per core)."""
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(key, "1")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_job(job_id: str, argv: Sequence[str], runs_root: Path, timeout: float | None = None,
            env: Mapping[str, str] | None = None, cwd: str | None = None,
            on_start: Callable[[subprocess.Popen], None] | None = None) -> AttemptResult:
    """One attempt of a job. ``argv`` is the command's arguments (no ``--out``/``--resume``); the text
    ``{runs}`` in them is replaced with ``runs_root``. ``on_start(proc)`` lets the caller stop it."""
    runs_root = Path(runs_root).resolve()
    job_dir = runs_root / job_id
    job_dir.mkdir(parents=True, exist_ok=True)
    resume = resumable_run_dir(job_dir)
    for stale in run_dirs(job_dir):  # an earlier attempt's directory with nothing to continue from
        if stale != resume and not (stale / "summary.json").is_file():
            shutil.rmtree(stale, ignore_errors=True)
    args = [a.replace("{runs}", str(runs_root)) for a in argv] + ["--out", str(job_dir)]
    if resume is not None:
        args += ["--resume", str(resume)]
    cmd = [sys.executable, "-m", "rlgen.run", *args]
    started = time.time()
    header = f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} on {hostname()}: {shlex.join(cmd)}\n"
    stderr_path = job_dir / "stderr.log"
    offset = stderr_path.stat().st_size + len(header.encode()) if stderr_path.is_file() else len(header.encode())
    with open(job_dir / "stdout.log", "a") as out, open(stderr_path, "a") as err:
        out.write(header)
        err.write(header)
        out.flush()
        err.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=job_environment(env), cwd=cwd)
        if on_start is not None:
            on_start(proc)
        timed_out = False
        try:
            returncode: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            returncode = proc.wait()
            timed_out = True
        except BaseException:  # the bench itself is interrupted: do not leave the job running
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    wall = time.time() - started
    with open(stderr_path, "rb") as f:
        f.seek(offset)
        stderr = f.read().decode(errors="replace")
    done = finished_run_dir(job_dir)
    finished = returncode == 0 and done is not None
    error = _error_line(stderr, returncode, finished)
    if timed_out:
        error = f"killed after the job timeout of {timeout:g} s"
    current = done or resumable_run_dir(job_dir) or (run_dirs(job_dir) or [None])[-1]
    return AttemptResult(
        job_id=job_id, returncode=returncode, wall_s=round(wall, 2), finished=finished,
        run_dir=None if current is None else f"{job_id}/{current.name}", error=error,
        stderr_tail=_tail(stderr), resumed_from=None if resume is None else f"{job_id}/{resume.name}",
        host=hostname(), device=device_description(), started=started)


# ------------------------------------------------------------------------------ moving job folders (Ray)
def pack_dir(folder: Path, with_checkpoints: bool = True) -> bytes:
    """A job folder as gzipped tar bytes (to send between a Ray worker and the driver)."""
    buf = io.BytesIO()
    folder = Path(folder)
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                rel = path.relative_to(folder)
                if not with_checkpoints and "checkpoints" in rel.parts[1:2]:
                    continue  # <run dir>/checkpoints/: only needed to resume, and the largest files
                if path.is_file():
                    tar.add(path, arcname=str(rel), recursive=False)
    return buf.getvalue()


def unpack_dir(blob: bytes, folder: Path) -> None:
    """Replace ``folder`` with the contents of :func:`pack_dir` bytes."""
    folder = Path(folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent if folder.parent.exists() else None))
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, filter="data")
            else:  # Python < 3.11.4: refuse members that would land outside the folder
                for member in tar.getmembers():
                    if member.name.startswith(("/", "..")) or ".." in Path(member.name).parts:
                        raise ValueError(f"unsafe path in job archive: {member.name}")
                tar.extractall(tmp)
        if folder.exists():
            shutil.rmtree(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(tmp), str(folder))
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def run_job_shipped(job_id: str, argv: Sequence[str], inputs: Mapping[str, bytes], timeout: float | None,
                    env: Mapping[str, str] | None) -> tuple[dict[str, Any], bytes]:
    """A job on a machine that may not share the driver's disk (a Ray worker): unpack the job folders it needs
    (its dependencies', and its own when resuming) into a scratch runs folder, run it, and return the result
    with its folder packed (without checkpoints once it finished)."""
    scratch = Path(tempfile.mkdtemp(prefix="rlgen-bench-"))
    try:
        runs_root = scratch / "runs"
        runs_root.mkdir()
        for other, blob in inputs.items():
            unpack_dir(blob, runs_root / other)
        result = run_job(job_id, argv, runs_root, timeout=timeout, env=env)
        return result.to_dict(), pack_dir(runs_root / job_id, with_checkpoints=not result.finished)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
