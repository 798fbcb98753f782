"""Every model on a CUDA device: device placement, bf16 autocast where a command uses it (the GANs' default), finite
losses, and checkpoints that resume on the CPU. Skipped without CUDA; ``RLGEN_TEST_DEVICE=cpu`` runs the same
checks on the CPU, which checks this module on a machine without a GPU. A lent GPU session runs
``python -m pytest -q tests/test_gpu.py`` first."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import pytest
import torch

from rlgen.cli import main
from tests.test_ssgan import tiny_npz

DEVICE = os.environ.get("RLGEN_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="no CUDA device")

SMALL = ["--batch-size", "16", "--n-samples", "4", "--log-every", "1"]
PIXEL = ["--hidden", "4", "--layers", "2", "--output-hidden", "8", "--binarize", "dynamic"]
IMAGE_COMMANDS = {
    "gan": ["--ngf", "8", "--ndf", "8", "--z-dim", "8", "--feature-matching", "--minibatch-discrimination", "4",
            "--historical-averaging", "0.01", "--label-smoothing", "0.1", "--label-noise", "0.05",
            "--virtual-batch-norm", "--minibatch-std", "--unroll-steps", "1"],
    "ssgan": ["--labels", "8", "--d-hidden", "32", "16", "--g-hidden", "16", "--z-dim", "8", "--init-size", "40"],
    "infogan": ["--ngf", "8", "--ndf", "8", "--fc-dim", "32", "--q-dim", "16", "--noise-dim", "4",
                "--categorical", "4", "--continuous", "1"],
    "vae": ["--iaf-steps", "2", "--z-dim", "4", "--hidden", "8", "--iw-samples", "4", "--binarize", "dynamic"],
    "vae-bidirectional": ["--bidirectional", "--z-dim", "4", "--hidden", "8", "--iw-samples", "4",
                          "--binarize", "dynamic"],
    "pixelcnn": PIXEL,
    "rowlstm": ["--variant", "rowlstm", *PIXEL],
    "diagbilstm": ["--variant", "diagbilstm", *PIXEL],
}


def command_of(name: str) -> str:
    return {"vae-bidirectional": "vae", "rowlstm": "pixelrnn", "diagbilstm": "pixelrnn"}.get(name, name)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tiny_npz(tmp_path_factory.mktemp("data") / "blobs.npz", n_train=64, n_test=20)


def finite_metrics(progress: Path) -> dict[str, float]:
    with open(progress, newline="") as f:
        rows = list(csv.DictReader(f))
    values = {k: float(v) for row in rows for k, v in row.items() if v not in ("", None) and k != "step"}
    assert values, "nothing was logged"
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    assert not bad, bad
    return values


@pytest.mark.parametrize("name", IMAGE_COMMANDS)
def test_image_model_trains_on_the_device_and_resumes_on_the_cpu(name, data, tmp_path, capsys):
    command = command_of(name)
    out = tmp_path / "runs"
    code = main([command, "--dataset", str(data), "--epochs", "1", "--out", str(out), "--device", DEVICE, *SMALL,
                 *IMAGE_COMMANDS[name]])
    assert code == 0, capsys.readouterr().err[-3000:]
    (run,) = out.glob(f"{command}-blobs-s0-*")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["device"].startswith(DEVICE)
    finite_metrics(run / "progress.csv")
    state = torch.load(run / "checkpoints" / "epoch_1.pt", weights_only=True, map_location="cpu")["model"]
    assert all(torch.isfinite(v).all() for v in state.values() if torch.is_tensor(v) and v.is_floating_point())

    code = main([command, "--resume", str(run), "--epochs", "2", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err[-3000:]
    assert json.loads((run / "summary.json").read_text())["device"] == "cpu"
    assert (run / "checkpoints" / "epoch_2.pt").is_file()


@pytest.mark.parametrize("algo", ["vime", "ppo"])
def test_rl_run_on_the_device_resumes_on_the_cpu(algo, tmp_path, capsys):
    """The SB3 policy on the device (VIME's BNN, a small MLP fitted on rollouts, stays on the CPU); the run goes on
    on the CPU from its checkpoint."""
    out = tmp_path / "runs"
    env = "SparseMountainCar" if algo == "vime" else "CartPole-v1"
    code = main([algo, "--env", env, "--steps", "2048", "--n-envs", "2", "--device", DEVICE, "--out", str(out)])
    assert code == 0, capsys.readouterr().err[-3000:]
    (run,) = out.glob(f"{algo}-*")
    assert json.loads((run / "summary.json").read_text())["device"].startswith(DEVICE)
    values = finite_metrics(run / "progress.csv")
    if algo == "vime":
        assert values.get("vime/ig_mean", 0) > 0
    code = main([algo, "--resume", str(run), "--steps", "4096", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] >= 4096 and summary["device"] == "cpu"
