"""Reading finished jobs back: each job's ``summary.json`` (the score and the run's figures) and
``progress.csv`` (its learning curve) into :class:`rlgen.bench.aggregate.Sample` records.

Run directories are large and git-ignored, so a finished job's result is also kept in the suite's folder, as
``finished/<job id>.json`` (its summary and the curves the tables use, a few KB): committed beside the tables, it
lets a later checkout remake them, and keeps the job from being rerun, after the run directory is gone."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.bench.aggregate import Sample
from rlgen.bench.execute import finished_run_dir
from rlgen.bench.suite import Job
from rlgen.common.checkpoint import atomic_write_json

KEPT_DIR = "finished"

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


def _progress_columns(job: Job) -> list[str]:
    """The progress.csv columns the tables need of a job: its curve and a ``progress:<column>`` metric."""
    columns = [job.curve] if job.curve else []
    if job.metric.startswith("progress:"):
        columns.append(job.metric.split(":", 1)[1])
    return columns


def run_result(job: Job, run_dir: Path) -> dict[str, Any] | None:
    """What the tables need of a finished run directory: its summary and curves (``None`` if the summary cannot
    be read)."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(summary, dict):
        return None
    curves = {}
    for column in _progress_columns(job):
        curve = read_curve(run_dir / "progress.csv", column)
        if curve is not None:
            curves[column] = [curve[0].tolist(), curve[1].tolist()]
    return {"run_dir": run_dir.name, "summary": summary, "curves": curves}


def kept_result(suite_dir: Path, job_id: str) -> dict[str, Any] | None:
    """The result kept in ``<suite_dir>/finished/`` for a job, or ``None``."""
    try:
        result = json.loads((Path(suite_dir) / KEPT_DIR / f"{job_id}.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return result if isinstance(result, dict) and isinstance(result.get("summary"), dict) else None


def keep_results(jobs: Sequence[Job], suite_dir: Path) -> dict[str, dict[str, Any]]:
    """Keep the result of every job with a finished run directory in ``<suite_dir>/finished/<job id>.json``, and
    return every finished job's result by job id: from its run directory, or where that is gone, the kept copy."""
    results = {}
    for job in jobs:
        run_dir = finished_run_dir(Path(suite_dir) / "runs" / job.id)
        kept = kept_result(suite_dir, job.id)
        result = run_result(job, run_dir) if run_dir is not None else kept
        if run_dir is not None and result is not None and result != kept:
            atomic_write_json(Path(suite_dir) / KEPT_DIR / f"{job.id}.json", result)
        if result is not None:
            results[job.id] = result
    return results


def _curve(result: dict[str, Any], column: str) -> tuple[np.ndarray, np.ndarray] | None:
    curve = (result.get("curves") or {}).get(column)
    return (np.asarray(curve[0], dtype=float), np.asarray(curve[1], dtype=float)) if curve else None


def metric_value(job: Job, result: dict[str, Any]) -> float | None:
    """The score: a summary.json key, or ``progress:<column>`` for the last logged value of a progress.csv
    column (for figures a command logs but does not summarise)."""
    if job.metric.startswith("progress:"):
        curve = _curve(result, job.metric.split(":", 1)[1])
        return float(curve[1][-1]) if curve is not None else None
    return _number(result["summary"].get(job.metric))


def collect(jobs: Sequence[Job], results: Mapping[str, dict[str, Any]], failed: Collection[str] = ()) -> list[Sample]:
    """One sample per job, from the finished jobs' ``results`` (:func:`keep_results`); unfinished jobs are
    ``finished=False``, and ``failed`` when their id is in ``failed`` (from ``jobs.json``), else not run yet."""
    samples = []
    for job in jobs:
        sample = Sample(label=job.label, task=job.task_name, params=tuple(job.params.items()), seed=job.seed,
                        metric=job.metric, finished=False, failed=job.id in failed, curve_key=job.curve,
                        normalize=job.normalize,
                        higher_is_better=job.higher_is_better, sparse=job.sparse)
        result = results.get(job.id)
        if result is not None:
            summary = result["summary"]
            sample.finished, sample.failed = True, False
            sample.summary = summary
            sample.score = metric_value(job, result)
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
                sample.curve = _curve(result, job.curve)
        samples.append(sample)
    return samples
