"""The best of several starts: train ``restarts`` candidate runs for ``select_after`` epochs each, keep the one whose
own unsupervised objective on the training data is lowest, and train it on to the full budget -- as k-means keeps
the best of its ``n_init`` starts and IIC the sub-head of lowest loss. No label is used to choose (labels, where the
data has them, only score the evaluation split).

It is for models with a bad local optimum that shows early: InfoGAN with ``real_consistency`` on MNIST leaves about
half its seeds with two digits sharing two code values told apart by style, visible by the second epoch as a
consistency loss twice that of a clean start (:meth:`~rlgen.vision.gan.infogan.InfoGAN.selection_score`).

Layout: ``<out>/<command>-<dataset>-s<seed>-best-of-<R>/`` holds ``candidate-<i>/`` (each an ordinary run directory,
seed ``seed + 1000 i``: candidate 0 is the plain run of ``seed``) and ``selection.json`` (each candidate's score and
the one kept). The kept candidate's own run directory goes on to the full budget. Calling again with the same
configuration picks up where it stopped: finished candidates are reused, an interrupted one resumes, and the kept
one resumes to the full budget.
"""

from __future__ import annotations

import csv
import logging
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlgen.common.checkpoint import atomic_write_json, load_json
from rlgen.common.errors import UserError
from rlgen.common.interrupts import Interrupted
from rlgen.common.options import option
from rlgen.common.run_dir import Resume, saved_run_config

log = logging.getLogger("rlgen")

SEED_STRIDE = 1000  # candidate i trains with seed + SEED_STRIDE * i


@dataclass
class RestartOptions:
    """The options of :func:`train_best_of`, for the models that have a score to choose a start by."""

    restarts: int = option(1, "train this many starts (seeds SEED, SEED+1000, ...) for --select-after epochs and go "
                           "on with the one of lowest unsupervised loss (1: one start)", minimum=1, metavar="R")
    select_after: int = option(2, "epochs each start trains before the choice", minimum=1, metavar="EPOCHS")


def candidates_dir(cfg: dict[str, Any], restarts: int) -> Path:
    from rlgen.vision.train import dataset_tag

    return Path(cfg.get("out", "runs")) / f"{cfg['command']}-{dataset_tag(cfg['dataset'])}-s{cfg['seed']}-best-of-{restarts}"


def last_epoch_metrics(run: Path, epoch: int) -> dict[str, float]:
    """The mean of each ``train/`` metric over the training windows of epoch ``epoch`` (1-based) in ``progress.csv``."""
    with open(run / "progress.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    ends = {int(float(r["time/epoch"])): int(float(r["step"])) for r in rows if r.get("time/epoch")}
    if epoch not in ends:
        raise UserError(f"{run / 'progress.csv'} has no row for the end of epoch {epoch}")
    start, end = ends.get(epoch - 1, 0), ends[epoch]  # the steps that ended the epoch before and this one
    window = [r for r in rows if start < int(float(r["step"])) <= end]
    keys = {k for r in window for k, v in r.items() if k.startswith("train/") and v not in ("", None)}
    return {k.removeprefix("train/"): statistics.fmean(float(r[k]) for r in window if r.get(k)) for k in keys}


def _candidate_run(folder: Path) -> Path | None:
    runs = sorted(p for p in folder.glob("*") if (p / "config.json").is_file()) if folder.is_dir() else []
    return runs[-1] if runs else None


def train_best_of(cfg: dict[str, Any], restarts: int, select_after: int) -> dict[str, Any]:
    """Train the best of ``restarts`` starts of the run ``cfg`` (chosen after ``select_after`` epochs, see the
    module docstring); return the kept run's summary, with ``selection`` added. Interrupted, it says to run the same
    command again (which goes on where it stopped)."""
    try:
        return _train_best_of(cfg, restarts, select_after)
    except Interrupted:
        raise
    except KeyboardInterrupt as exc:
        raise Interrupted("run the same command again to go on (the starts and the kept run resume where they "
                          "stopped)") from exc


def _train_best_of(cfg: dict[str, Any], restarts: int, select_after: int) -> dict[str, Any]:
    from rlgen.vision.models import model_class
    from rlgen.vision.train import train

    model = model_class(cfg["command"])
    if restarts < 2 or not 1 <= select_after < int(cfg["epochs"]):
        raise UserError(f"the best of {restarts} starts after {select_after} epochs: give at least 2 starts and "
                        f"fewer epochs before choosing than the run's {cfg['epochs']}")
    if not model.selection_metrics(cfg):
        raise UserError(f"'rlgen {cfg['command']}' with these options has no unsupervised score to choose a start "
                        "by (InfoGAN: give --real-consistency and --real-clustering)")
    base = candidates_dir(cfg, restarts)
    start = time.time()
    chosen = base / "selection.json"

    def budget() -> dict[str, Any]:  # --max-minutes is this process's: what the starts before left of it
        if not cfg.get("max_minutes"):
            return {}
        return {"max_minutes": max(float(cfg["max_minutes"]) - (time.time() - start) / 60, 1e-3)}

    scores = []
    for i in range(restarts):
        folder = base / f"candidate-{i}"
        run = _candidate_run(folder)
        done = run is not None and (run / "summary.json").is_file() and \
            int(load_json(run / "summary.json", what="run summary").get("epochs", 0)) >= select_after
        if run is None:
            log.info("start %d of %d: seed %d, %d epochs", i + 1, restarts, cfg["seed"] + SEED_STRIDE * i, select_after)
            summary = train({**cfg, "seed": cfg["seed"] + SEED_STRIDE * i, "epochs": select_after, "out": str(folder),
                             "restarts": 1, **budget()})
            run = _candidate_run(folder)
        elif not done:
            summary = train(saved_run_config(run, cfg["command"]), Resume(str(run), {"epochs": select_after, **budget()}))
        else:
            summary = {"epochs": select_after}
        if summary["epochs"] < select_after:  # out of time
            log.info("--max-minutes reached during start %d of %d; run the same command again to go on", i + 1,
                     restarts)
            return summary
        assert run is not None
        metrics = last_epoch_metrics(run, select_after)
        score = model.selection_score(cfg, metrics) if set(model.selection_metrics(cfg)) <= set(metrics) else None
        scores.append({"candidate": i, "seed": cfg["seed"] + SEED_STRIDE * i, "run": str(run),
                       "score": None if score is None or not math.isfinite(score) else round(score, 6)})
    valid = [s for s in scores if s["score"] is not None]
    if not valid:
        raise UserError(f"no start of {base} logged the metrics its score needs; check their progress.csv")
    kept = min(valid, key=lambda s: s["score"])
    selection = {"restarts": restarts, "select_after": select_after, "candidates": scores, "kept": kept["candidate"]}
    if chosen.is_file() and load_json(chosen, what="choice of starts")["kept"] != kept["candidate"]:
        raise UserError(f"{chosen} kept another start than the starts' logs now score best; was a start trained on "
                        "after the choice? Move the folder aside to choose again")
    atomic_write_json(chosen, selection)
    log.info("kept start %d (seed %d, score %.4f of %s)", kept["candidate"] + 1, kept["seed"], kept["score"],
             ", ".join(f"{s['score']:.4f}" for s in valid))
    summary = train(saved_run_config(Path(kept["run"]), cfg["command"]),
                    Resume(kept["run"], {"epochs": int(cfg["epochs"]), **budget()}))
    summary["selection"] = selection
    atomic_write_json(Path(kept["run"]) / "summary.json", summary)
    return summary
