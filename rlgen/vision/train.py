"""Train an image model from a resolved run configuration: ``train(cfg)`` is what ``rlgen gan|ssgan|infogan|vae|
pixelcnn|pixelrnn`` runs, and what a script calls with a configuration that :func:`rlgen.vision.config.resolve`
made from its options, or with an earlier run's config.json::

    from rlgen.vision.config import resolve
    from rlgen.vision.train import train
    summary = train(resolve("pixelcnn", {"dataset": "binarized_mnist", "epochs": 2, "seed": 1}))

The data are loaded before the run directory is made (missing data leave nothing behind), the model is built by
its own ``from_config`` (:data:`rlgen.vision.models.MODELS`), and the shared
:class:`~rlgen.vision.trainer.Trainer` trains it and writes ``summary.json`` once, with the model's final figures.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from rlgen.common.run_dir import Resume, RunDir, open_run, resumed_run

log = logging.getLogger("rlgen")


def dataset_tag(dataset: str) -> str:
    """The dataset's part of a run directory's name: the file stem for an ``.npz``."""
    return Path(dataset).stem if dataset.endswith(".npz") else dataset


def load_training_data(cfg: dict[str, Any]):
    """The training split (``train_split``) of the run's dataset, the first ``limit_images`` of it if given."""
    from rlgen.vision.datasets import load_dataset

    data = load_dataset(cfg["dataset"], cfg.get("train_split", "train"), cfg["data_dir"],
                        download=bool(cfg.get("download")),
                        verify=bool(cfg.get("verify_checksums", True)), binarize=cfg.get("binarize"),
                        seed=cfg["seed"])
    if cfg.get("limit_images"):
        data = data.take(int(cfg["limit_images"]))
    return data


def load_test_data(cfg: dict[str, Any]):
    """The evaluation split (``eval_split``: test, or valid) of the run's dataset (all of it: ``limit_images``
    applies to training only), or None with ``evaluate: false``."""
    from rlgen.common.errors import UserError
    from rlgen.vision.datasets import load_dataset

    if not cfg.get("evaluate", True):
        return None
    try:
        return load_dataset(cfg["dataset"], cfg.get("eval_split", "test"), cfg["data_dir"],
                            download=bool(cfg.get("download")),
                            verify=bool(cfg.get("verify_checksums", True)), binarize=cfg.get("binarize"),
                            seed=cfg["seed"])
    except UserError as exc:
        raise UserError(f"{exc}; or pass --no-evaluate to train without the test split") from exc


def load_data(cfg: dict[str, Any]):
    """``(train, eval)``: the training data and, for a model evaluated after each epoch, the evaluation split."""
    from rlgen.vision.models import model_class

    return load_training_data(cfg), load_test_data(cfg) if model_class(cfg["command"]).evaluated else None


def train(cfg: dict[str, Any], resume: Resume | None = None) -> dict[str, Any]:
    """Train (or, with ``resume``, go on with) the image model ``cfg["command"]`` on ``cfg["dataset"]``; return
    the run's summary (also in ``<run dir>/summary.json``)."""
    import torch

    from rlgen.vision.trainer import Trainer

    if resume is None and int(cfg.get("restarts", 1)) > 1:
        if int(cfg["epochs"]) > int(cfg["select_after"]):
            from rlgen.vision.restarts import train_best_of

            _prepare(cfg)  # data and options the model refuses fail here, before a start is announced
            return train_best_of(cfg, int(cfg["restarts"]), int(cfg["select_after"]))
        # A short run (a smoke test of the default preset) has no epochs left after the choice: one start
        log.info("%d epochs leave none after choosing among %d starts at epoch %d: training one start", cfg["epochs"],
                 cfg["restarts"], cfg["select_after"])
        cfg = {**cfg, "restarts": 1}
    run = None
    if resume is not None:  # the run's saved config says which data it trains on
        run = resumed_run(cfg, dataset_tag(cfg["dataset"]), resume)
        cfg = run.config
    # The run directory is written last: missing data or options the model refuses leave nothing behind (a new
    # run's directory is not made, a resumed run's config and provenance are not touched)
    data, test, model, trainer_config, device = _prepare(cfg)
    if run is None:
        run = open_run(cfg, dataset_tag(cfg["dataset"]))
    else:
        run.begin_session()
    log.info("run directory: %s", run.path)
    log.info("%s: %d training images of shape %s%s on %s (%d torch threads)", cfg["dataset"], len(data),
             data.image_shape, f", {len(test)} {cfg.get('eval_split', 'test')} images" if test is not None else "",
             device, torch.get_num_threads())
    summary = Trainer(model, run, data, trainer_config, device, eval_data=test).fit()
    report_done(summary, run)
    return summary


def _prepare(cfg: dict[str, Any]) -> tuple[Any, Any, Any, Any, Any]:
    """``(data, eval data, model, trainer config, device)`` of the run ``cfg``, seeded; raises UserError for missing
    data or options the model refuses."""
    from rlgen.common.device import resolve_device, set_torch_threads
    from rlgen.common.seeding import set_seed
    from rlgen.vision.datasets import check_batch_size
    from rlgen.vision.models import model_class
    from rlgen.vision.trainer import TrainerConfig

    data, test = load_data(cfg)
    device = resolve_device(cfg["device"])  # a resumed run's own, unless --device moves it
    set_torch_threads(cfg["torch_threads"])
    set_seed(cfg["seed"])
    model = model_class(cfg["command"]).from_config(cfg, data, test)
    trainer_config = TrainerConfig.from_config(cfg)
    check_batch_size(data, trainer_config.batch_size)
    return data, test, model, trainer_config, device


def report_done(summary: dict[str, Any], run: RunDir) -> None:
    """The closing lines of a training command: budget, wall clock, speed (unknown when a resumed run had nothing
    left to train) and where the results are."""
    speed = f" ({summary['images_per_s']} images/s)" if summary.get("images_per_s") else ""
    log.info("done: %d epochs, %d steps in %.0f s%s", summary["epochs"], summary["steps"], summary["wall_clock_s"],
             speed)
    print(f"results: {run.path} (config.json, progress.csv, tb/, checkpoints/, samples/, summary.json)")
