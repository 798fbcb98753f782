"""Statistics over seeds: mean, standard deviation, bootstrap confidence intervals, interquartile mean (IQM),
normalised scores, success rates, steps to first reward and learning-curve bands.

The IQM and the stratified bootstrap follow rliable (Agarwal et al., 2021): the IQM is the mean of the middle
50% of scores (``scipy.stats.trim_mean(x, 0.25)``), and aggregate intervals resample seeds within each task.
Every bootstrap is vectorised numpy with a fixed seed, so a table is the same each time it is made.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

N_BOOT = 10_000
CONFIDENCE = 0.95
SEED = 0


# ------------------------------------------------------------------------------------------- statistics
def iqm(values: Sequence[float] | np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Interquartile mean: drop the lowest and highest ``floor(n/4)`` values and average the rest."""
    x = np.sort(np.asarray(values, dtype=float), axis=axis)
    n = x.shape[axis]
    cut = int(0.25 * n)
    kept = np.take(x, np.arange(cut, n - cut), axis=axis)
    out = kept.mean(axis=axis)
    return float(out) if np.ndim(out) == 0 else out


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return x.mean(axis=axis)


STATISTICS: dict[str, Callable[..., Any]] = {"mean": _mean, "iqm": iqm}


def bootstrap_ci(values: Sequence[float], statistic: str = "mean", n_boot: int = N_BOOT,
                 confidence: float = CONFIDENCE, seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` (``mean`` or ``iqm``) over ``values`` (the seeds)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    samples = x[rng.integers(0, x.size, size=(n_boot, x.size))]  # (n_boot, n): all resamples at once
    stats = STATISTICS[statistic](samples, axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)


def stratified_bootstrap_ci(groups: Sequence[Sequence[float]], statistic: str = "iqm", n_boot: int = N_BOOT,
                            confidence: float = CONFIDENCE, seed: int = SEED) -> tuple[float, float]:
    """rliable's interval for an aggregate over tasks: resample the seeds of each task (``groups[i]``)
    independently, pool them, and take ``statistic`` of the pool."""
    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not groups:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    pooled = np.concatenate([g[rng.integers(0, g.size, size=(n_boot, g.size))] for g in groups], axis=1)
    stats = STATISTICS[statistic](pooled, axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Stats:
    """Summary of one cell's per-seed values."""

    n: int
    mean: float
    std: float  # sample standard deviation (ddof 1); 0 for a single seed
    ci_low: float
    ci_high: float
    iqm: float

    @classmethod
    def of(cls, values: Sequence[float], seed: int = SEED) -> Stats:
        x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
        if x.size == 0:
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan)
        lo, hi = bootstrap_ci(x, "mean", seed=seed)
        std = float(x.std(ddof=1)) if x.size > 1 else 0.0
        return cls(int(x.size), float(x.mean()), std, lo, hi, float(iqm(x)))


def normalised(score: float, low: float, high: float) -> float:
    """``(score - low) / (high - low)``: 0 at the low reference (e.g. random), 1 at the high one (e.g. expert)."""
    if not all(map(_finite, (score, low, high))) or high == low:
        return math.nan
    return (score - low) / (high - low)


def success_rate(reached: Sequence[bool | None]) -> float:
    """Share of seeds that reached the sparse reward (seeds that did not say are left out)."""
    known = [bool(r) for r in reached if r is not None]
    return float(np.mean(known)) if known else math.nan


def steps_to_first_reward(steps: Sequence[int | None]) -> float:
    """Median step of the first positive reward over the seeds that got one (NaN when none did)."""
    got = [s for s in steps if s is not None and _finite(s) and s >= 0]
    return float(np.median(got)) if got else math.nan


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ------------------------------------------------------------------------------------------ learning curves
def curve_band(curves: Sequence[tuple[np.ndarray, np.ndarray]], points: int = 100, n_boot: int = 2000,
               confidence: float = CONFIDENCE, seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                          np.ndarray]:
    """Seeds' curves (steps, values) on one step grid: (grid, mean, ci_low, ci_high).

    The grid runs from the latest first step to the earliest last step of the seeds, so every point averages
    all of them; each curve is linearly interpolated onto it. The band is a bootstrap interval of the mean.
    """
    curves = [(np.asarray(s, float), np.asarray(v, float)) for s, v in curves if len(s)]
    if not curves:
        empty = np.array([])
        return empty, empty, empty, empty
    start = max(s[0] for s, _ in curves)
    stop = min(s[-1] for s, _ in curves)
    grid = np.linspace(start, stop, points) if stop > start else np.array([stop])
    ys = np.stack([np.interp(grid, s, v) for s, v in curves])  # (seeds, points)
    mean = ys.mean(axis=0)
    if len(ys) == 1:
        return grid, mean, mean.copy(), mean.copy()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(ys), size=(n_boot, len(ys)))
    boot = ys[idx].mean(axis=1)  # (n_boot, points)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha], axis=0)
    return grid, mean, lo, hi


# --------------------------------------------------------------------------------------------------- cells
@dataclass
class Sample:
    """One job's outcome as aggregation sees it."""

    label: str
    task: str
    params: tuple[tuple[str, Any], ...]
    seed: int
    metric: str
    finished: bool
    failed: bool = False  # its last attempt failed (an unfinished job that is not failed has not run yet)
    score: float | None = None
    reached: bool | None = None
    first_reward_step: int | None = None
    wall_s: float | None = None
    steps_per_s: float | None = None
    curve_key: str | None = None
    curve: tuple[np.ndarray, np.ndarray] | None = None
    normalize: Mapping[str, Any] | None = None
    summary: Mapping[str, Any] = field(default_factory=dict)
    higher_is_better: bool = True
    sparse: bool = False
    normalised: float | None = None


@dataclass
class Cell:
    """A table row: one label on one task with one set of grid values, over its seeds."""

    label: str
    task: str
    params: tuple[tuple[str, Any], ...]
    metric: str
    higher_is_better: bool
    sparse: bool
    samples: list[Sample]
    score: Stats
    normalised: Stats
    success_rate: float
    steps_to_first_reward: float
    wall_s: float
    steps_per_s: float

    @property
    def key(self) -> tuple[str, str, tuple]:
        return self.label, self.task, self.params

    @property
    def n_failed(self) -> int:
        return sum(s.failed for s in self.samples)

    @property
    def n_not_run(self) -> int:
        return sum(not s.finished and not s.failed for s in self.samples)

    @property
    def scores(self) -> list[float]:
        return [s.score for s in self.samples if s.finished and s.score is not None]

    @property
    def missing_metric(self) -> int:
        """Finished seeds whose summary.json lacks the metric."""
        return sum(s.finished and s.score is None for s in self.samples)


def _nanmean(values: Sequence[float | None]) -> float:
    got = [v for v in values if _finite(v)]
    return float(np.mean(got)) if got else math.nan


def _reference(spec: Any, sample: Sample, label_means: Mapping[tuple[str, str], float]) -> float:
    """A normalisation reference: a number, ``{task: number}``, ``{summary: key}`` (from the job's own
    summary.json) or ``{label: L}`` (the mean score of label L on the same task)."""
    if _finite(spec):
        return float(spec)
    if isinstance(spec, Mapping):
        if "summary" in spec:
            value = sample.summary.get(spec["summary"])
            return float(value) if _finite(value) else math.nan
        if "label" in spec:
            return label_means.get((str(spec["label"]), sample.task), math.nan)
        value = spec.get(sample.task)
        return float(value) if _finite(value) else math.nan
    return math.nan


def aggregate(samples: Sequence[Sample], seed: int = SEED) -> list[Cell]:
    """Group samples into cells (label, task, grid values), in first-seen order, with their statistics.

    Normalised scores are computed per seed from the cell's ``normalize: {min: ..., max: ...}`` references.
    """
    groups: dict[tuple[str, str, tuple], list[Sample]] = {}
    for s in samples:
        groups.setdefault((s.label, s.task, s.params), []).append(s)
    # `{label: L}` references: L's mean score on the task, from L's cell without grid values (e.g. the expert).
    label_means: dict[tuple[str, str], float] = {}
    for (label, task, params), group in groups.items():
        if not params:
            label_means[(label, task)] = _nanmean([s.score for s in group if s.finished])
    for s in samples:
        s.normalised = None
        if s.finished and s.score is not None and s.normalize:
            value = normalised(s.score, _reference(s.normalize.get("min"), s, label_means),
                               _reference(s.normalize.get("max"), s, label_means))
            s.normalised = value if math.isfinite(value) else None
    cells = []
    for (label, task, params), group in groups.items():
        done = [s for s in group if s.finished]
        cells.append(Cell(
            label=label, task=task, params=params, metric=group[0].metric,
            higher_is_better=group[0].higher_is_better, sparse=group[0].sparse, samples=group,
            score=Stats.of([s.score for s in done if s.score is not None], seed),
            normalised=Stats.of([s.normalised for s in done if s.normalised is not None], seed),
            success_rate=success_rate([s.reached for s in done]),
            steps_to_first_reward=steps_to_first_reward([s.first_reward_step for s in done]),
            wall_s=_nanmean([s.wall_s for s in done]), steps_per_s=_nanmean([s.steps_per_s for s in done])))
    return cells


@dataclass(frozen=True)
class Overall:
    """A label's normalised scores pooled over tasks (rliable's aggregate)."""

    label: str
    params: tuple[tuple[str, Any], ...]
    tasks: int
    n: int
    mean: float
    iqm: float
    ci_low: float  # stratified bootstrap interval of the IQM
    ci_high: float


def aggregate_normalised(cells: Sequence[Cell], seed: int = SEED) -> list[Overall]:
    """Per (label, grid values): mean and IQM of the normalised scores over every task and seed, with a
    stratified bootstrap 95% interval of the IQM. Labels without normalised scores are left out."""
    by_label: dict[tuple[str, tuple], list[list[float]]] = {}
    for cell in cells:
        values = [s.normalised for s in cell.samples if s.normalised is not None]
        if values:
            by_label.setdefault((cell.label, cell.params), []).append(values)
    out = []
    for (label, params), groups in by_label.items():
        pooled = np.concatenate([np.asarray(g, float) for g in groups])
        lo, hi = stratified_bootstrap_ci(groups, "iqm", seed=seed)
        out.append(Overall(label, params, len(groups), int(pooled.size), float(pooled.mean()), float(iqm(pooled)),
                           lo, hi))
    return out
