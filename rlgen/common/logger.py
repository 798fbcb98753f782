"""Metrics: ``progress.csv`` and TensorBoard events in the run directory, one short console line per dump.

Every rlgen trainer (SB3-based or not) records through an SB3 :class:`~stable_baselines3.common.logger.Logger`
built here, so RL and vision runs write the same files in the same way.
"""

from __future__ import annotations

import csv
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stable_baselines3.common.logger import KVWriter, Logger, TensorBoardOutputFormat
from tqdm import tqdm

from rlgen.common.checkpoint import atomic_write

log = logging.getLogger("rlgen")


def setup_logging(verbose: bool = False) -> None:
    """Plain ``rlgen: message`` lines on stderr."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="rlgen: %(message)s",
                        stream=sys.stderr, force=True)


def _scalar(value: Any) -> float | int | str | None:
    if isinstance(value, (int, float, str)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None  # images, histograms, videos go to TensorBoard only


class AppendingCSVOutputFormat(KVWriter):
    """``progress.csv`` with a ``step`` column that survives resumes and new columns.

    Unlike SB3's CSV writer it appends to an existing file, widens the header when a new key appears, and can
    drop the rows logged after the checkpoint a run resumes from, so a resumed run's CSV has each step once.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.fieldnames: list[str] = []
        if self.path.is_file():
            with open(self.path, newline="") as f:
                self.fieldnames = next(csv.reader(f), [])

    def truncate_after(self, step: int) -> None:
        """Remove rows whose step is past ``step`` (logged after the checkpoint being resumed)."""
        if not self.path.is_file():
            return
        with open(self.path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("step") and float(r["step"]) <= step]
        self._rewrite(rows)

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fieldnames, restval="")
            writer.writeheader()
            writer.writerows(rows)

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        row: dict[str, Any] = {"step": step}
        for key, value in key_values.items():
            if "csv" in (key_excluded.get(key) or ()):
                continue
            scalar = _scalar(value)
            if scalar is not None:
                row[key] = scalar
        new_keys = [k for k in row if k not in self.fieldnames]
        if new_keys:
            old_rows: list[dict[str, Any]] = []
            if self.path.is_file() and self.fieldnames:
                with open(self.path, newline="") as f:
                    old_rows = list(csv.DictReader(f))
            self.fieldnames = self.fieldnames + new_keys if self.fieldnames else ["step"] + [k for k in new_keys if k != "step"]
            self._rewrite(old_rows)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fieldnames, restval="").writerow(row)

    def close(self) -> None:
        pass


class ConsoleSummary(KVWriter):
    """One line per dump with the few keys a person watches (the full set is in the CSV and TensorBoard): ``keys``
    in their order, then every recorded key starting with one of ``prefixes`` (evaluation results, which only some
    dumps carry)."""

    def __init__(self, keys: Sequence[str], prefixes: Sequence[str] = ("eval/",)):
        self.keys, self.prefixes = list(keys), tuple(prefixes)

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        parts = [f"step {step}"]
        extra = sorted(k for k in key_values if k.startswith(self.prefixes) and k not in self.keys)
        keys = [*self.keys, *extra]
        short = [key.split("/")[-1] for key in keys]
        for key, name in zip(keys, short):
            if short.count(name) > 1:  # e.g. train/loss and eval/loss: say which is which
                name = key.replace("/", " ")
            value = _scalar(key_values.get(key))
            if isinstance(value, float) and math.isfinite(value):
                parts.append(f"{name} {value:.4g}")
            elif value is not None:
                parts.append(f"{name} {value}")
        if len(parts) > 1:
            tqdm.write("rlgen: " + " | ".join(parts), file=sys.stderr)

    def close(self) -> None:
        pass


def truncate_event_files(folder: Path, step: int) -> None:
    """Drop the events past ``step`` from the TensorBoard event files in ``folder`` (each rewritten atomically), so
    that a run killed after its last checkpoint does not show the steps it redoes twice."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    for path in sorted(folder.glob("events.out.tfevents.*")):
        records = list(RawEventFileLoader(str(path)).Load())
        kept = [r for r in records if Event.FromString(r).step <= step]
        if len(kept) == len(records):
            continue

        def write(tmp: str, kept: list[bytes] = kept) -> None:
            with open(tmp, "wb") as f:
                writer = RecordWriter(f)
                for record in kept:
                    writer.write(record)

        atomic_write(path, write)


def make_logger(run_path: str | Path, console_keys: Sequence[str] = (), resume_step: int | None = None) -> Logger:
    """A logger writing ``progress.csv`` and TensorBoard events under ``run_path``.

    ``resume_step``: the step of the checkpoint a run resumes from; CSV rows and TensorBoard events logged after it
    are dropped (the resumed run logs those steps again).
    """
    run_path = Path(run_path)
    csv_out = AppendingCSVOutputFormat(run_path / "progress.csv")
    if resume_step is not None:
        csv_out.truncate_after(resume_step)
        truncate_event_files(run_path / "tb", resume_step)
    formats: list[KVWriter] = [csv_out, TensorBoardOutputFormat(str(run_path / "tb"))]
    if console_keys:
        formats.append(ConsoleSummary(console_keys))
    return Logger(str(run_path), formats)
