"""The best of several starts: train ``restarts`` candidate runs for ``select_after`` epochs each, keep the one whose
own unsupervised objective on the training data is lowest, and train it on to the full budget -- as k-means keeps
the best of its ``n_init`` starts and IIC the sub-head of lowest loss. No label is used to choose (labels, where the
data has them, only score the evaluation split).

It is for models with a bad local optimum that shows early: InfoGAN with ``real_consistency`` on MNIST leaves about
half its seeds with two digits sharing two code values told apart by style, visible by the second epoch as a
consistency loss twice that of a clean start (:meth:`~rlgen.vision.gan.infogan.InfoGAN.selection_score`).

Layout: ``<out>/<command>-<dataset>-s<seed>-best-of-<R>/`` holds ``candidate-<i>/`` (each an ordinary run directory,
seed ``seed + 1000 i``: candidate 0 is the plain run of ``seed``), ``options.json`` (the options it began with) and
``selection.json`` (each candidate's score and the one kept, also copied into the kept run's directory). The kept
candidate's own run directory goes on to the full budget. Calling again with the same options picks up where it
stopped: finished candidates are reused, an interrupted one resumes, a failed one scores nothing, and the kept one
resumes to the full budget (``--epochs``, ``--max-minutes``, ``--device`` and ``--torch-threads`` may differ: they
are this call's); other options than those it began with are an error.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlgen.common.checkpoint import CheckpointFolder, atomic_write_json, load_json
from rlgen.common.errors import UserError
from rlgen.common.interrupts import Interrupted
from rlgen.common.options import option
from rlgen.common.run_dir import Resume, run_name, saved_run_config

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

    name = run_name(cfg["command"], dataset_tag(cfg["dataset"]), cfg["seed"])
    return Path(cfg.get("out", "runs")) / f"{name}-best-of-{restarts}"


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
    module docstring); return the kept run's summary (``selection.json`` in its directory says how it was chosen).
    Interrupted, it says to run the same command again (which goes on where it stopped)."""
    try:
        return _train_best_of(cfg, restarts, select_after)
    except Interrupted:
        raise
    except KeyboardInterrupt as exc:
        raise Interrupted("run the same command again to go on (the starts and the kept run resume where they "
                          "stopped)") from exc


#: options that may differ between the call that began a best-of and one that goes on with it (where and how long it
#: runs; the budget of the final run)
MAY_CHANGE = ("epochs", "max_minutes", "device", "torch_threads", "out", "data_dir")


def _train_best_of(cfg: dict[str, Any], restarts: int, select_after: int) -> dict[str, Any]:
    from rlgen.vision.models import model_class
    from rlgen.vision.train import train

    model = model_class(cfg["command"])
    if restarts < 2 or not 1 <= select_after < int(cfg["epochs"]):
        raise UserError(f"the best of {restarts} starts after {select_after} epochs: give at least 2 starts and "
                        f"fewer epochs before choosing than the run's {cfg['epochs']}")
    if not model.selection_metrics(cfg):
        raise UserError(f"'rlgen {cfg['command']}' with these options has no unsupervised score to choose a start "
                        "by (InfoGAN: give --real-consistency)")
    base = candidates_dir(cfg, restarts)
    _check_same_options(base, cfg)
    began = time.time()

    def minutes_left() -> float | None:  # --max-minutes is this call's: what the work before left of it
        return None if not cfg.get("max_minutes") else float(cfg["max_minutes"]) - (time.time() - began) / 60

    def how(epochs: int) -> dict[str, Any]:  # what each start and the kept run are resumed with: this call's own
        return {"epochs": epochs, "max_minutes": minutes_left(), "device": cfg["device"],
                "torch_threads": cfg["torch_threads"]}

    def out_of_time() -> bool:
        left = minutes_left()
        return left is not None and left <= 0

    scores = []
    for i in range(restarts):
        folder, seed = base / f"candidate-{i}", cfg["seed"] + SEED_STRIDE * i
        run = _candidate_run(folder)
        if run is None or _epochs_done(run) < select_after:
            if out_of_time():
                break
            try:
                if run is None:
                    log.info("start %d of %d: seed %d, %d epochs", i + 1, restarts, seed, select_after)
                    train({**cfg, **how(select_after), "seed": seed, "out": str(folder), "restarts": 1})
                    run = _candidate_run(folder)
                    _remember_options(base, cfg)  # (once a start exists: bad data or options leave nothing behind)
                else:
                    train(saved_run_config(run, cfg["command"]), Resume(str(run), how(select_after)))
            except UserError as exc:  # a start that began and failed (e.g. diverged): the others may be fine
                run = _candidate_run(folder)
                if run is None:  # it never began: bad data or options, the same for every start
                    raise
                log.warning("start %d of %d (seed %d) failed: %s", i + 1, restarts, seed, exc)
        if run is None or _epochs_done(run) < select_after:
            if out_of_time():
                break
            scores.append({"candidate": i, "seed": seed, "run": None if run is None else str(run.resolve()),
                           "score": None})
            continue
        metrics = last_epoch_metrics(run, select_after)
        score = model.selection_score(cfg, metrics) if set(model.selection_metrics(cfg)) <= set(metrics) else None
        scores.append({"candidate": i, "seed": seed, "run": str(run.resolve()),
                       "score": None if score is None or not math.isfinite(score) else round(score, 6)})
    if len(scores) < restarts:  # --max-minutes spent before every start had its epochs
        log.info("--max-minutes reached before the choice among %d starts; run the same command again to go on",
                 restarts)
        return {"epochs": 0, "finished": False}
    valid = [s for s in scores if s["score"] is not None]
    if not valid:
        raise UserError(f"no start in {base} trained {select_after} epochs with the metrics its score needs; see their "
                        "logs (progress.csv)")
    kept = min(valid, key=lambda s: s["score"])
    selection = {"restarts": restarts, "select_after": select_after, "candidates": scores, "kept": kept["candidate"]}
    chosen = base / "selection.json"
    if chosen.is_file() and load_json(chosen, what="choice of starts")["kept"] != kept["candidate"]:
        raise UserError(f"{chosen} names another start than the starts' logs score best now; move {base} aside to "
                        "choose again")
    atomic_write_json(chosen, selection)
    atomic_write_json(Path(kept["run"]) / "selection.json", selection)  # the kept run says how it was chosen
    log.info("kept start %d (seed %d, score %.4f of %s)", kept["candidate"] + 1, kept["seed"], kept["score"],
             ", ".join(f"{s['score']:.4f}" for s in valid))
    if out_of_time():
        return {"epochs": select_after, "finished": False}
    return train(saved_run_config(Path(kept["run"]), cfg["command"]), Resume(kept["run"], how(int(cfg["epochs"]))))


def _epochs_done(run: Path) -> int:
    """Epochs of ``run`` held whole by the checkpoint the trainer would resume from (0 before the first)."""
    latest = CheckpointFolder(run / "checkpoints", ("epoch_*.pt",)).latest()
    return int(latest.get("epoch", 0)) if latest else 0


def _options(cfg: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps({k: v for k, v in cfg.items() if k not in MAY_CHANGE}))  # (as JSON holds them)


def _check_same_options(base: Path, cfg: dict[str, Any]) -> None:
    """The options of a best-of are fixed by the call that began it (``options.json`` in ``base``): going on with
    other options would score starts trained one way by another."""
    saved = base / "options.json"
    if not saved.is_file():
        return
    mine, theirs = _options(cfg), load_json(saved, what="best-of options")
    differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if differ:
        raise UserError(f"{base} began with other options ({', '.join(differ)} differ); give the same options to go "
                        "on with it, or another --out (or --seed) for a new one")


def _remember_options(base: Path, cfg: dict[str, Any]) -> None:
    if not (base / "options.json").is_file():
        atomic_write_json(base / "options.json", _options(cfg))
