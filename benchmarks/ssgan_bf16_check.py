"""The semi-supervised GAN's test error with and without bf16 autocast on the same checkpoint (issue #21: bf16 must
leave the test error unchanged). Both the discriminator as trained and its moving average are evaluated on the whole
test split, in fp32 and under bf16 autocast.

    python benchmarks/ssgan_bf16_check.py runs/bench-vision-gan/ssgan-mnist-s0-<time>

Prints the errors and adds them, with the command, commit, device and date, to
``benchmarks/results/vision-gan/ssgan-bf16-check.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from rlgen.common.checkpoint import load_json, load_torch
from rlgen.common.provenance import device_description, git_commit, utc_now
from rlgen.vision.gan.ssgan import SSGAN
from rlgen.vision.train import load_test_data, load_training_data

RESULT = Path(__file__).resolve().parent / "results" / "vision-gan" / "ssgan-bf16-check.json"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python benchmarks/ssgan_bf16_check.py RUN_DIR", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    run = Path(argv[0])
    cfg = load_json(run / "config.json", what="run config")
    data, test = load_training_data(cfg), load_test_data(cfg)
    model = SSGAN.from_config(cfg, data, test)
    latest = load_json(run / "checkpoints" / "latest.json", what="checkpoint index")
    model.load_state_dict(load_torch(run / "checkpoints" / latest["file"])["model"])
    x, y = torch.from_numpy(test.images).float() / 255, torch.from_numpy(test.labels)
    row = {"run": run.name, "dataset": cfg["dataset"], "epoch": latest["epoch"], "test_images": len(y)}
    for averaged in (False, True):
        for bf16 in (False, True):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                pred = torch.cat([model.classify(x[i:i + 1000], averaged=averaged).argmax(1)
                                  for i in range(0, len(x), 1000)])
            row[f"{'ema' if averaged else 'raw'}_{'bf16' if bf16 else 'fp32'}_error"] = (pred != y).float().mean().item()
    row.update(command="python benchmarks/ssgan_bf16_check.py " + " ".join(argv), commit=git_commit(),
               device=device_description(), date=utc_now())
    rows = json.loads(RESULT.read_text())["rows"] if RESULT.is_file() else []
    RESULT.write_text(json.dumps({"rows": rows + [row]}, indent=2) + "\n")
    print(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
