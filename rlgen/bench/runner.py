"""Running a suite's jobs: dependencies first, retries of failed or killed jobs, resume, and two backends.

* :class:`LocalBackend`: a pool of ``--jobs`` threads, each waiting on one job's subprocess (the work is in
  the subprocesses, so threads are enough and a killed job cannot take the pool down with it).
* :class:`RayBackend`: one Ray task per job on an existing cluster (``ray.init(address=...)``). The task runs
  the same subprocess on a worker in a scratch folder and returns the job's folder packed; the driver unpacks
  it under ``<suite>/runs/`` (workers need not share the driver's disk).

Finished jobs (a ``summary.json`` in their run directory) are never rerun; an unfinished job with a
checkpoint continues with ``--resume``. Every attempt is recorded in ``jobs.json``.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rlgen.bench.collect import KEPT_DIR, keep_results, kept_result
from rlgen.bench.execute import (
    AttemptResult,
    finished_run_dir,
    pack_dir,
    resumable_run_dir,
    run_job,
    run_job_shipped,
    unpack_dir,
)
from rlgen.bench.state import DONE, FAILED, PENDING, RUNNING, JobRecord, StateFile
from rlgen.bench.suite import Job
from rlgen.common.errors import UserError

log = logging.getLogger("rlgen")


class Backend:
    """Where jobs run. ``submit`` returns a future; ``finish`` turns it into an :class:`AttemptResult`
    on the driver (never raising: a crash is a failed attempt)."""

    description = ""
    #: how many jobs run at once (None: as many as are submitted; a Ray cluster queues them itself). The runner
    #: submits no more, so that a job marked running in jobs.json is running, not waiting in a queue.
    capacity: int | None = None

    def submit(self, job_id: str, argv: Sequence[str], runs_root: Path, inputs: Sequence[str],
               resources: Mapping[str, Any], timeout: float | None) -> cf.Future:
        raise NotImplementedError

    def finish(self, job_id: str, future: cf.Future, runs_root: Path) -> AttemptResult:
        raise NotImplementedError

    def cancel(self) -> None:
        """Stop every job still running (the bench is being interrupted)."""

    def close(self) -> None:
        pass


def _crashed(job_id: str, exc: BaseException) -> AttemptResult:
    from rlgen.common.provenance import device_description, hostname

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return AttemptResult(job_id=job_id, returncode=None, wall_s=0.0, finished=False, run_dir=None,
                         error=f"{type(exc).__name__}: {first}"[:500], stderr_tail=str(exc)[-4000:],
                         resumed_from=None, host=hostname(), device=device_description(), started=0.0)


class LocalBackend(Backend):
    def __init__(self, jobs: int, env: Mapping[str, str] | None = None):
        self.capacity = jobs
        self.env = dict(env or {})
        self.pool = cf.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="bench-job")
        self.procs: set[subprocess.Popen] = set()
        self.lock = threading.Lock()
        self.description = f"local process pool, {jobs} job{'s' if jobs != 1 else ''} at a time"

    def submit(self, job_id: str, argv: Sequence[str], runs_root: Path, inputs: Sequence[str],
               resources: Mapping[str, Any], timeout: float | None) -> cf.Future:
        return self.pool.submit(run_job, job_id, list(argv), runs_root, timeout, self.env, None, self._started)

    def _started(self, proc: subprocess.Popen) -> None:
        with self.lock:
            self.procs = {p for p in self.procs if p.poll() is None} | {proc}

    def finish(self, job_id: str, future: cf.Future, runs_root: Path) -> AttemptResult:
        try:
            return future.result()
        except Exception as exc:  # noqa: BLE001 - e.g. the job folder cannot be written: a failed attempt
            return _crashed(job_id, exc)

    def cancel(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        with self.lock:
            for proc in self.procs:
                if proc.poll() is None:
                    # SIGTERM, which rlgen treats as Ctrl-C (the job checkpoints and exits 130, resumable); SIGINT
                    # would be lost on a job started from a shell's background, which ignores it
                    proc.terminate()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class RayBackend(Backend):
    """Jobs as Ray tasks on the cluster at ``address`` (``auto``: the one started on this machine)."""

    def __init__(self, address: str, env: Mapping[str, str] | None = None):
        try:
            import ray
        except ImportError:
            raise UserError("--ray needs Ray: pip install 'rlgen[ray]' (or 'ray[default]')") from None
        self.ray = ray
        self.env = dict(env or {})
        try:
            ray.init(address=address, log_to_driver=False, ignore_reinit_error=True)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"cannot connect to a Ray cluster at {address!r} ({first}); start one with "
                            "'ray start --head' or pass its address to --ray") from exc
        self.refs: list[Any] = []
        self._task = ray.remote(num_cpus=1, max_retries=0)(run_job_shipped)  # retries are ours: counted, logged
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        cpus = int(ray.cluster_resources().get("CPU", 0))
        plural = "s" if len(nodes) != 1 else ""
        self.description = f"Ray cluster at {address} ({len(nodes)} node{plural}, {cpus} CPUs)"

    def submit(self, job_id: str, argv: Sequence[str], runs_root: Path, inputs: Sequence[str],
               resources: Mapping[str, Any], timeout: float | None) -> cf.Future:
        blobs = {other: pack_dir(runs_root / other, with_checkpoints=False) for other in inputs}
        if resumable_run_dir(runs_root / job_id) is not None:  # continue an interrupted attempt
            blobs[job_id] = pack_dir(runs_root / job_id, with_checkpoints=True)
        options = {k: v for k, v in resources.items() if k in ("num_cpus", "num_gpus", "memory", "resources")}
        ref = self._task.options(**options).remote(job_id, list(argv), blobs, timeout, self.env)
        self.refs.append(ref)
        return ref.future()

    def finish(self, job_id: str, future: cf.Future, runs_root: Path) -> AttemptResult:
        try:
            result, blob = future.result()
        except Exception as exc:  # noqa: BLE001 - RayTaskError, WorkerCrashedError, ...: a failed attempt
            return _crashed(job_id, exc)
        unpack_dir(blob, runs_root / job_id)  # results are written by the driver
        return AttemptResult(**result)

    def cancel(self) -> None:
        for ref in self.refs:
            with contextlib.suppress(Exception):  # already finished
                self.ray.cancel(ref)  # a KeyboardInterrupt in the task, which stops its subprocess

    def close(self) -> None:
        self.ray.shutdown()


def default_echo(message: str) -> None:
    print(f"rlgen bench: {message}", file=sys.stderr, flush=True)


class Runner:
    """Runs the unfinished jobs of a suite on a backend and keeps ``jobs.json`` up to date."""

    def __init__(self, jobs: Sequence[Job], suite_dir: Path, backend: Backend, retries: int = 1,
                 job_timeout: float | None = None, echo: Callable[[str], None] = default_echo,
                 commit: str | Callable[[], str] | None = None, command: str | None = None):
        """``commit`` names the code a job runs: a string, or a function asked at each job's launch (the code on
        disk then, which may have moved on since the bench started)."""
        self.jobs = {job.id: job for job in jobs}
        self.suite_dir = Path(suite_dir)
        self.runs_root = (self.suite_dir / "runs").resolve()
        self.backend, self.retries, self.job_timeout, self.echo = backend, retries, job_timeout, echo
        self.state = StateFile(self.suite_dir / "jobs.json")
        self.commit, self.command = commit, command
        self._launch_commit: dict[str, str | None] = {}
        self._run_dir_gone: set[str] = set()  # done jobs known only by their kept result

    def refresh(self) -> list[Job]:
        """Mark jobs whose run directory has a summary.json, or whose result is kept in the suite's folder, as
        done; return the others, in suite order."""
        todo = []
        self._run_dir_gone.clear()
        for job in self.jobs.values():
            rec = self.state.get(job.id)
            done = finished_run_dir(self.runs_root / job.id)
            if done is not None:
                rec.status, rec.run_dir, rec.error = DONE, f"{job.id}/{done.name}", None
            elif kept_result(self.suite_dir, job.id) is not None:
                rec.status, rec.error = DONE, None
                self._run_dir_gone.add(job.id)
            else:  # never run, failed before, deleted, or running when an earlier bench was killed
                rec.status = PENDING
                todo.append(job)
        return todo

    def run(self) -> StateFile:
        self.runs_root.mkdir(parents=True, exist_ok=True)
        todo = self.refresh()
        total, skipped = len(self.jobs), len(self.jobs) - len(todo)
        if skipped:
            self.echo(f"{skipped} of {total} jobs already finished; not rerun")
        attempts: dict[str, int] = {}
        running: dict[cf.Future, str] = {}
        finished_count = skipped
        capacity = getattr(self.backend, "capacity", None)
        try:
            while todo or running:
                for job in list(todo):
                    deps = [self.state.get(d) for d in job.deps]
                    gone = [d for d in job.deps if d in self._run_dir_gone]
                    if any(d.status == FAILED for d in deps) or gone:
                        todo.remove(job)
                        rec = self.state.get(job.id)
                        if gone:  # it needs the files in that run directory, not only the result
                            rec.status, rec.error = FAILED, (
                                f"not run: the run directory of the job it needs ({gone[0]}) is gone; delete "
                                f"{self.suite_dir / KEPT_DIR / gone[0]}.json to rerun that job")
                        else:
                            failed_dep = next(d.id for d in deps if d.status == FAILED)
                            rec.status, rec.error = FAILED, f"not run: the job it needs ({failed_dep}) failed"
                        finished_count += 1
                        self.echo(f"[{finished_count}/{total}] skipped {job.id}: {rec.error}")
                    elif all(d.status == DONE for d in deps) and (capacity is None or len(running) < capacity):
                        todo.remove(job)
                        running[self._submit(job)] = job.id
                self.state.save()
                if not running:
                    break  # nothing left that can run (cannot happen with an acyclic suite)
                done, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
                for future in done:
                    job = self.jobs[running.pop(future)]
                    result = self.backend.finish(job.id, future, self.runs_root)
                    attempts[job.id] = attempts.get(job.id, 0) + 1
                    rec = self._record(job, result)
                    if result.finished:
                        keep_results([job], self.suite_dir)  # at once: a stopped bench's runs/ may not survive
                        finished_count += 1
                        self.echo(f"[{finished_count}/{total}] done {job.id} ({result.wall_s:.0f} s"
                                  f"{', resumed' if result.resumed_from else ''})")
                    elif attempts[job.id] <= self.retries:
                        self.echo(f"attempt {attempts[job.id]} of {job.id} failed ({rec.error}); retrying "
                                  f"({self.retries + 1 - attempts[job.id]} left)")
                        running[self._submit(job)] = job.id
                    else:
                        rec.status = FAILED
                        finished_count += 1
                        self.echo(f"[{finished_count}/{total}] FAILED {job.id} after {attempts[job.id]} "
                                  f"attempt{'s' if attempts[job.id] > 1 else ''}: {rec.error}")
                    self.state.save()
        except BaseException:
            self.backend.cancel()
            for job_id in running.values():
                self.state.get(job_id).status = PENDING
            self.state.save()
            raise
        finally:
            self.backend.close()
        return self.state

    def _submit(self, job: Job) -> cf.Future:
        dep_dirs = {d: "{runs}/" + str(self.state.get(d).run_dir) for d in job.deps}
        argv = job.argv(dep_dirs)
        rec = self.state.get(job.id)
        rec.status, rec.argv = RUNNING, argv
        self._launch_commit[job.id] = self.commit() if callable(self.commit) else self.commit
        return self.backend.submit(job.id, argv, self.runs_root, list(job.deps), job.resources, self.job_timeout)

    def _record(self, job: Job, result: AttemptResult) -> JobRecord:
        rec = self.state.get(job.id)
        rec.attempts += 1
        rec.returncode, rec.error, rec.stderr_tail = result.returncode, result.error, result.stderr_tail
        rec.wall_s = result.wall_s
        rec.total_wall_s = round(rec.total_wall_s + result.wall_s, 2)
        commit = self._launch_commit.get(job.id)
        rec.host, rec.device, rec.commit, rec.bench_command = result.host, result.device, commit, self.command
        if result.run_dir:
            rec.run_dir = result.run_dir
        rec.status = DONE if result.finished else RUNNING
        rec.history.append({**{k: getattr(result, k) for k in ("started", "returncode", "wall_s", "error", "host",
                                                              "resumed_from")}, "commit": commit})
        return rec
