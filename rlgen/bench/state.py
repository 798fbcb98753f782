"""``jobs.json``: what each job of a suite did (status, attempts, return code, stderr tail, wall time).

Written atomically by the driver after every change, so a killed bench leaves a readable file. A job counts
as finished when its run directory holds ``summary.json``; this file is the record of *how* jobs ended (what a
table's footnotes and a person debugging a failure need), not the source of truth for what is done.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rlgen.common.checkpoint import atomic_write_json

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"


@dataclass
class JobRecord:
    id: str
    status: str = PENDING
    attempts: int = 0  # over every bench invocation
    returncode: int | None = None  # of the last attempt; negative: killed by that signal
    error: str | None = None  # one line saying why the last attempt failed
    stderr_tail: str = ""
    wall_s: float | None = None  # of the last attempt
    total_wall_s: float = 0.0
    run_dir: str | None = None  # relative to the suite's runs/ folder: "<job id>/<command>-<task>-s<seed>-<time>"
    host: str | None = None
    device: str | None = None
    commit: str | None = None  # of the rlgen checkout that ran the last attempt (the driver's)
    bench_command: str | None = None  # the `rlgen bench` command line that ran the last attempt
    argv: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per attempt


class StateFile:
    """The ``jobs.json`` of one suite results folder."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.records: dict[str, JobRecord] = self._read()
        self._touched: set[str] = set()  # the records this process has asked for (and may have changed)

    def _read(self) -> dict[str, JobRecord]:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
            known = set(JobRecord.__dataclass_fields__)
            return {job_id: JobRecord(**{k: v for k, v in rec.items() if k in known})
                    for job_id, rec in data.get("jobs", {}).items()}
        except (OSError, json.JSONDecodeError, TypeError, AttributeError):
            # A damaged state file only loses history: finished jobs are found from their summary.json.
            return {}

    def get(self, job_id: str) -> JobRecord:
        self._touched.add(job_id)
        if job_id not in self.records:
            self.records[job_id] = JobRecord(id=job_id)
        return self.records[job_id]

    def save(self) -> None:
        """Write this process's records over the file's current ones and keep the rest, so that two bench
        processes running different jobs of one suite (say, two subsets of it) do not undo each other's records."""
        merged = self._read()
        merged.update({k: self.records[k] for k in self._touched})
        self.records.update({k: v for k, v in merged.items() if k not in self._touched})
        atomic_write_json(self.path, {"jobs": {k: asdict(v) for k, v in merged.items()}})
