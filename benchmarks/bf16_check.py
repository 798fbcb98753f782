"""An image model's evaluation with and without bf16 autocast on the same checkpoint (issues #21 and #22: bf16 must
leave the test error and the test NLL unchanged; the likelihoods themselves are computed in fp32 either way).

    python benchmarks/bf16_check.py RUN_DIR [--split test|valid]

Builds the run's model from its config.json, loads its newest checkpoint and runs the trainer's own evaluation
pass (``Trainer.evaluate``) over the whole split twice, in fp32 and under bf16 autocast, one torch thread. Prints
both sets of metrics and their differences, and adds them, with the command, commit, CPU and date, to
``benchmarks/results/bf16-check/<command>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from rlgen.common.checkpoint import CheckpointFolder, load_json
from rlgen.common.provenance import device_description, git_commit, utc_now
from rlgen.common.run_dir import RunDir
from rlgen.vision.models import model_class
from rlgen.vision.train import load_test_data, load_training_data
from rlgen.vision.trainer import Trainer, TrainerConfig

RESULTS = Path(__file__).resolve().parent / "results" / "bf16-check"


def evaluate(run: Path, cfg: dict, split: str, bf16: bool) -> dict[str, float]:
    cfg = {**cfg, "amp": bf16, "eval_split": split, "evaluate": True}
    data, test = load_training_data(cfg), load_test_data(cfg)
    torch.manual_seed(cfg["seed"])
    model = model_class(cfg["command"]).from_config(cfg, data, test)
    trainer = Trainer(model, RunDir(run, cfg, resumed=True), data, TrainerConfig.from_config(cfg), "cpu",
                      eval_data=test)
    trainer.load_checkpoint(trainer.checkpoints.file(trainer.checkpoints.latest(), "file"))
    return trainer.evaluate()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--split", choices=("test", "valid"), default="test")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_json(args.run / "config.json", what="run config")
    latest = CheckpointFolder(args.run / "checkpoints", ()).latest()
    fp32, bf16 = (evaluate(args.run, cfg, args.split, flag) for flag in (False, True))
    row = {"run": args.run.name, "command": cfg["command"], "dataset": Path(cfg["dataset"]).name,
           "split": args.split, "epoch": latest["epoch"], "step": latest["step"], "fp32": fp32, "bf16": bf16,
           "bf16_minus_fp32": {k: bf16[k] - fp32[k] for k in fp32 if k in bf16},
           "invocation": "python benchmarks/bf16_check.py " + " ".join(argv), "commit": git_commit(),
           "device": device_description(), "date": utc_now()}
    out = RESULTS / f"{cfg['command']}.json"
    rows = json.loads(out.read_text())["rows"] if out.is_file() else []
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": [*rows, row]}, indent=2) + "\n")
    print(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
