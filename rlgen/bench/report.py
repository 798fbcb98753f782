"""A suite's results on disk: ``results.csv`` (one row per cell), ``RESULTS.md`` (the tables with the command,
commit, device and date that made them) and learning-curve PNGs (mean and 95% band, one panel per task)."""

from __future__ import annotations

import csv
import functools
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlgen.bench.aggregate import Cell, Overall, curve_band
from rlgen.bench.state import JobRecord
from rlgen.common.checkpoint import atomic_write

CSV_COLUMNS = ["label", "task", "params", "metric", "seeds", "failed", "mean", "std", "ci_low", "ci_high", "iqm",
               "normalised_mean", "normalised_std", "normalised_ci_low", "normalised_ci_high", "normalised_iqm",
               "success_rate", "steps_to_first_reward", "wall_clock_s", "steps_per_s", "scores"]


@dataclass
class Provenance:
    command: str
    commit: str
    device: str
    backend: str
    date: str
    remade_by: str | None = None  # the --report-only command that remade the tables


# ------------------------------------------------------------------------------------------------ formatting
def fmt(x: float | None) -> str:
    """A number for a table: n/a, thousands separators for big values, 3 significant digits for small ones."""
    if x is None or not math.isfinite(x):
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def params_text(params: tuple[tuple[str, Any], ...]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params)


def _csv_number(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else repr(round(float(x), 6))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "curve"


# ------------------------------------------------------------------------------------------------ results.csv
def write_csv(cells: Sequence[Cell], path: Path) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_COLUMNS)
            for c in cells:
                scores = ";".join(f"{s.seed}:{s.score:.6g}" for s in c.samples if s.finished and s.score is not None)
                writer.writerow([c.label, c.task, params_text(c.params), c.metric, c.score.n, c.n_failed,
                                 *map(_csv_number, (c.score.mean, c.score.std, c.score.ci_low, c.score.ci_high,
                                                    c.score.iqm, c.normalised.mean, c.normalised.std,
                                                    c.normalised.ci_low, c.normalised.ci_high, c.normalised.iqm,
                                                    c.success_rate, c.steps_to_first_reward, c.wall_s,
                                                    c.steps_per_s)), scores])

    return atomic_write(path, write)


# ------------------------------------------------------------------------------------------------- RESULTS.md
def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def esc(text: str) -> str:
        return str(text).replace("|", "\\|")

    out = ["| " + " | ".join(map(esc, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(map(esc, row)) + " |" for row in rows]
    return out


def _row_keys(cells: Sequence[Cell]) -> list[tuple[str, tuple]]:
    """Pivot rows: (task, grid values); a label without grid values on a task fills every row of that task."""
    keys: dict[tuple[str, tuple], None] = {}
    for c in cells:
        keys[(c.task, c.params)] = None
    tasks_with_params = {task for task, params in keys if params}
    return [(task, params) for task, params in keys if params or task not in tasks_with_params]


def _pivot(cells: Sequence[Cell], value, best_of=None) -> list[str]:
    """Rows: task (and grid values); columns: labels; ``value(cell)`` in each; the best mean in bold."""
    labels = list(dict.fromkeys(c.label for c in cells))
    by_key = {(c.label, c.task, c.params): c for c in cells}
    rows = []
    for task, params in _row_keys(cells):
        found = [by_key.get((label, task, params)) or by_key.get((label, task, ())) for label in labels]
        best = best_of(found) if best_of and sum(c is not None for c in found) > 1 else None
        row = [task + (f" ({params_text(params)})" if params else "")]
        for c in found:
            text = "" if c is None else value(c)
            row.append(f"**{text}**" if c is not None and c is best and text not in ("", "n/a") else text)
        rows.append(row)
    return _table(["Task", *labels], rows)


def _best_mean(found: Sequence[Cell | None]) -> Cell | None:
    scored = [c for c in found if c is not None and math.isfinite(c.score.mean)]
    if len(scored) < 2:
        return None
    key = (lambda c: c.score.mean) if scored[0].higher_is_better else (lambda c: -c.score.mean)
    return max(scored, key=key)


def _score_text(c: Cell) -> str:
    if c.score.n == 0:
        return "failed" if c.n_failed else ("not run" if c.n_not_run else "n/a")
    text = f"{fmt(c.score.mean)} ± {fmt(c.score.std)} [{fmt(c.score.ci_low)}, {fmt(c.score.ci_high)}]"
    return text + (f" ({c.score.n}/{len(c.samples)} seeds)" if c.score.n < len(c.samples) else "")


def _success_text(c: Cell) -> str:
    known = [s.reached for s in c.samples if s.finished and s.reached is not None]
    if not known:
        return "n/a"
    text = f"{sum(known)}/{len(known)}"
    return text + (f" ({fmt(c.steps_to_first_reward)})" if math.isfinite(c.steps_to_first_reward) else "")


def _jobs(n: int) -> str:
    return f"{n} job{'s' if n > 1 else ''}"


def _counted(counts: Counter) -> list[str]:
    """```value` (n jobs)`` for each value, the most frequent first."""
    return [f"`{value}` ({_jobs(n)})" for value, n in counts.most_common()]


def _commands(records: Sequence[JobRecord], last: str) -> str:
    """The bench command lines that ran the jobs (a suite run in parts has several), else the last one."""
    ran = [r for r in records if r.attempts]
    counts = Counter(r.bench_command for r in ran if r.bench_command)
    if not counts or (set(counts) == {last} and counts[last] == len(ran)):
        return f"`{last}`"
    parts = _counted(counts)
    unknown = len(ran) - sum(counts.values())
    if unknown:
        parts.append(f"{_jobs(unknown)} run before commands were recorded per job")
    return "; ".join(parts)


def _parts(records: Sequence[JobRecord]) -> int:
    """How many different bench command lines ran the suite's jobs."""
    return len({r.bench_command for r in records if r.attempts and r.bench_command})


def _commits(records: Sequence[JobRecord], current: str) -> str:
    counts = Counter(r.commit for r in records if r.commit)
    if not counts or set(counts) == {current}:
        return f"`{current}`"
    return ", ".join(_counted(counts))


def write_markdown(suite_name: str, description: str, cells: Sequence[Cell], overall: Sequence[Overall],
                   records: Sequence[JobRecord], provenance: Provenance, plots: Sequence[Path], path: Path,
                   warnings: Sequence[str] = ()) -> Path:
    finished = sum(c.score.n + c.missing_metric for c in cells)
    total = sum(len(c.samples) for c in cells)
    failed = [r for r in records if r.status == "failed"]
    devices = list(dict.fromkeys(r.device for r in records if r.device)) or [provenance.device]
    lines = [f"# Benchmark: {suite_name}", ""]
    if description:
        lines += [description, ""]
    lines += _table(["", ""], [
        ["Command", _commands(records, provenance.command) + (f" (tables remade by `{provenance.remade_by}`)"
                                                               if provenance.remade_by else "")],
        ["Commit", _commits(records, provenance.commit)],
        ["Device", "; ".join(devices)],
        # The backend of the last invocation; a suite run in parts may have used others (the Command row).
        ["Backend" + (" (the last part)" if _parts(records) > 1 else ""), provenance.backend],
        ["Date", provenance.date],
        ["Jobs", f"{finished} finished, {len(failed)} failed, of {total}"],
    ])
    lines += ["", ("Each cell: mean ± standard deviation over seeds [95% bootstrap confidence interval of the mean]; "
                   "the best mean of a row in bold. Per-seed scores, IQM and more are in `results.csv`."), ""]

    for metric in dict.fromkeys(c.metric for c in cells):
        group = [c for c in cells if c.metric == metric]
        direction = "higher is better" if group[0].higher_is_better else "lower is better"
        lines += [f"## `{metric}` ({direction})", ""] + _pivot(group, _score_text, _best_mean) + [""]

    sparse = [c for c in cells if c.sparse]
    if sparse:
        lines += ["## Sparse reward: seeds that reached it (median env steps to the first reward)", ""]
        lines += _pivot(sparse, _success_text) + [""]

    if overall:
        lines += ["## Normalised score", "",
                  ("(score - low reference) / (high reference - low reference) per seed; per task: mean [95% CI]; "
                   "over all tasks: interquartile mean with a stratified bootstrap 95% CI (rliable's method)."), ""]
        norm_cells = [c for c in cells if c.normalised.n]
        lines += _pivot(norm_cells, lambda c: f"{fmt(c.normalised.mean)} [{fmt(c.normalised.ci_low)}, "
                                              f"{fmt(c.normalised.ci_high)}]") + [""]
        lines += _table(["Label", "Tasks", "Runs", "IQM [95% CI]", "Mean"], [
            [o.label + (f" ({params_text(o.params)})" if o.params else ""), str(o.tasks), str(o.n),
             f"{fmt(o.iqm)} [{fmt(o.ci_low)}, {fmt(o.ci_high)}]", fmt(o.mean)] for o in overall]) + [""]

    lines += ["## All cells", ""]
    lines += _table(["Label", "Task", "Options", "Seeds", "Mean", "Std", "95% CI", "IQM", "Wall clock (s)",
                     "Steps/s"], [
        [c.label, c.task, params_text(c.params), f"{c.score.n}" + (f" (+{c.n_failed} failed)" if c.n_failed else "")
         + (f" (+{c.n_not_run} not run)" if c.n_not_run else ""),
         fmt(c.score.mean), fmt(c.score.std), f"[{fmt(c.score.ci_low)}, {fmt(c.score.ci_high)}]", fmt(c.score.iqm),
         fmt(c.wall_s), fmt(c.steps_per_s)] for c in cells]) + [""]

    if plots:
        lines += ["## Learning curves", "", "Mean over seeds with a 95% bootstrap band; one panel per task.", ""]
        lines += [f"![{p.stem}]({p.name})" for p in plots] + [""]

    missing = [c for c in cells if c.missing_metric]
    notes = list(warnings) + [f"{c.label} on {c.task}: {c.missing_metric} finished job(s) have no `{c.metric}` "
                              "in summary.json" for c in missing]
    if failed:
        lines += ["## Failed jobs", ""]
        lines += _table(["Job", "Attempts", "Error"], [[f"`{r.id}`", str(r.attempts), (r.error or "").strip()]
                                                       for r in failed]) + [""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]

    def write(tmp: str) -> None:
        Path(tmp).write_text("\n".join(lines))

    return atomic_write(path, write)


# --------------------------------------------------------------------------------------------------- curves
def _save_png(fig: Any, path: str) -> None:
    fig.savefig(path, format="png", dpi=110)


def plot_curves(cells: Sequence[Cell], folder: Path, title: str = "") -> list[Path]:
    """One PNG per curve column (``curves.png`` when there is one): a panel per task, a line per label (and
    grid values) with its 95% band. Drawn without pyplot, so no global backend is switched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = list(dict.fromkeys(s.curve_key for c in cells for s in c.samples if s.curve is not None))
    paths = []
    for key in keys:
        group = [c for c in cells if any(s.curve is not None and s.curve_key == key for s in c.samples)]
        tasks = list(dict.fromkeys(c.task for c in group))
        ncols = min(3, len(tasks))
        nrows = math.ceil(len(tasks) / ncols)
        fig = Figure(figsize=(5 * ncols, 3.6 * nrows + 0.6), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        series = list(dict.fromkeys((c.label, c.params) for c in group))
        colors = {s: f"C{i % 10}" for i, s in enumerate(series)}
        handles: dict[str, Any] = {}
        for ax, task in zip(axes, tasks):
            for c in (c for c in group if c.task == task):
                curves = [s.curve for s in c.samples if s.curve is not None and s.curve_key == key]
                grid, mean, lo, hi = curve_band(curves)
                if grid.size == 0:
                    continue
                name = c.label + (f" ({params_text(c.params)})" if c.params else "") + f", {len(curves)} seed{'s' if len(curves) > 1 else ''}"
                color = colors[(c.label, c.params)]
                (line,) = ax.plot(grid, mean, color=color, lw=1.8, marker="o" if grid.size == 1 else None)
                ax.fill_between(grid, lo, hi, color=color, alpha=0.2, lw=0)
                handles.setdefault(c.label + (f" ({params_text(c.params)})" if c.params else ""), line)
                line.set_label(name)
            ax.set_title(task)
            ax.set_xlabel("step")
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
            if len(tasks) == 1 or len(series) == 1:
                ax.legend(fontsize="small")
        for ax in axes[len(tasks):]:
            ax.set_visible(False)
        fig.suptitle(f"{title}: mean over seeds, 95% band" if title else "mean over seeds, 95% band",
                     fontsize="medium")
        if len(tasks) > 1 and len(series) > 1:
            fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                       ncols=min(4, len(handles)), fontsize="small")
        path = folder / ("curves.png" if len(keys) == 1 else f"curves-{_slug(key)}.png")
        atomic_write(path, functools.partial(_save_png, fig))
        paths.append(path)
    return paths
