"""Reading finished jobs back: each job's ``summary.json`` (the score and the run's figures) and
``progress.csv`` (its learning curve) into :class:`rlgen.bench.aggregate.Sample` records."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.bench.aggregate import Sample
from rlgen.bench.execute import finished_run_dir
from rlgen.bench.suite import Job

STEP_COLUMN = "step"
THROUGHPUT_KEYS = ("env_steps_per_s", "images_per_s")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def read_curve(progress: Path, column: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``step`` against ``column`` from a progress.csv, rows without a value skipped, sorted by step."""
    if not progress.is_file():
        return None
    steps, values = [], []
    with open(progress, newline="") as f:
        for row in csv.DictReader(f):
            x, y = _number(row.get(STEP_COLUMN)), _number(row.get(column))
            if x is not None and y is not None:
                steps.append(x)
                values.append(y)
    if not steps:
        return None
    order = np.argsort(steps, kind="stable")
    return np.asarray(steps)[order], np.asarray(values)[order]


def metric_value(summary: dict[str, Any], run_dir: Path, metric: str) -> float | None:
    """The score: a summary.json key, or ``progress:<column>`` for the last logged value of a progress.csv
    column (for figures a command logs but does not summarise)."""
    if metric.startswith("progress:"):
        curve = read_curve(run_dir / "progress.csv", metric.split(":", 1)[1])
        return float(curve[1][-1]) if curve is not None else None
    return _number(summary.get(metric))


def collect(jobs: Sequence[Job], runs_root: Path, failed: Collection[str] = ()) -> list[Sample]:
    """One sample per job; jobs without a finished run directory are ``finished=False``, and ``failed`` when
    their id is in ``failed`` (from ``jobs.json``), else not run yet."""
    samples = []
    for job in jobs:
        sample = Sample(label=job.label, task=job.task_name, params=tuple(job.params.items()), seed=job.seed,
                        metric=job.metric, finished=False, failed=job.id in failed, curve_key=job.curve,
                        normalize=job.normalize,
                        higher_is_better=job.higher_is_better, sparse=job.sparse)
        run_dir = finished_run_dir(Path(runs_root) / job.id)
        if run_dir is not None:
            try:
                summary = json.loads((run_dir / "summary.json").read_text())
            except (OSError, json.JSONDecodeError):
                summary = None
            if isinstance(summary, dict):
                sample.finished, sample.failed = True, False
                sample.summary = summary
                sample.score = metric_value(summary, run_dir, job.metric)
                reached = summary.get("reached_reward")
                sample.reached = bool(reached) if isinstance(reached, bool) else None
                first = _number(summary.get("first_reward_step"))
                sample.first_reward_step = int(first) if first is not None else None
                sample.wall_s = _number(summary.get("wall_clock_s"))
                sample.steps_per_s = next((_number(summary[k]) for k in THROUGHPUT_KEYS
                                           if _number(summary.get(k)) is not None), None)
                if sample.steps_per_s is None and sample.wall_s and _number(summary.get("steps")):
                    sample.steps_per_s = float(summary["steps"]) / sample.wall_s
                if job.curve:
                    sample.curve = read_curve(run_dir / "progress.csv", job.curve)
        samples.append(sample)
    return samples
