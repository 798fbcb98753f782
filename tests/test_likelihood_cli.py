"""``rlgen vae|pixelcnn|pixelrnn`` end to end on tiny generated data: run directory, test-split evaluation, PNG
sample grid with the sampling time logged, checkpoints and resume."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch

from rlgen.cli import main

torch.set_num_threads(1)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
COMMON = ["--no-verify-checksums", "--batch-size", "16", "--n-samples", "4", "--log-every", "2", "--device", "cpu"]
TINY_PIXEL = ["--hidden", "4", "--layers", "1", "--output-hidden", "4"]


def write_idx(path: Path, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x08" + bytes([array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
                     + array.tobytes())


def tiny_mnist_dir(root: Path, n_train: int = 64, n_test: int = 32) -> Path:
    """Blobs of light in the official MNIST file layout, both splits (uncompressed IDX)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:28, :28]
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        centres = rng.uniform(8, 20, (n, 2))
        images = 255 * np.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 20)
        write_idx(root / "mnist" / f"{prefix}-images-idx3-ubyte", images.astype(np.uint8))
        write_idx(root / "mnist" / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    return root


def rows_of(progress: Path) -> list[dict[str, str]]:
    with open(progress) as f:
        return list(csv.DictReader(f))


def run_dir(out: Path, pattern: str) -> Path:
    (found,) = out.glob(pattern)
    return found


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tiny_mnist_dir(tmp_path_factory.mktemp("data"))


def test_pixelrnn_end_to_end_then_resume_in_a_new_process(tmp_path, data):
    out = tmp_path / "runs"
    first = subprocess.run([sys.executable, "-m", "rlgen.run", "pixelrnn", "--variant", "rowlstm", "--dataset", "mnist",
                            "--data-dir", str(data), "--epochs", "1", "--seed", "1", "--out", str(out), *COMMON,
                            *TINY_PIXEL], check=False, capture_output=True, text=True, env=ENV, timeout=240)
    assert first.returncode == 0, first.stderr
    run = run_dir(out, "pixelrnn-mnist-s1-*")
    assert str(run) in first.stdout
    config = json.loads((run / "config.json").read_text())
    assert config["variant"] == "rowlstm" and config["binarize"] == "dynamic" and config["hidden"] == 4
    rows = rows_of(run / "progress.csv")
    assert [int(r["step"]) for r in rows] == [2, 4]  # 64 images / 16 = 4 steps
    assert float(rows[-1]["eval/loss"]) == pytest.approx(float(rows[-1]["eval/nats"]))  # nats per test image
    assert 0 < float(rows[-1]["eval/bits_per_dim"]) < 2
    png = run / "samples" / "epoch_0001.png"
    assert matplotlib.image.imread(png).shape == (2 * 30 + 2, 2 * 30 + 2)  # 2x2 grid of 28x28 + padding
    assert "PixelRNN: sampled 4 images in" in first.stderr and "test split after the last epoch" in first.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["sample_seconds"] > 0 and summary["sample_images"] == 4
    assert summary["test_loss"] == pytest.approx(float(rows[-1]["eval/loss"]))
    ckpt = torch.load(run / "checkpoints" / "epoch_1.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["step"] == 4 and set(ckpt["optimizers"]) == {"model"}
    assert any(k.startswith("layers.0.state_to_state") for k in ckpt["model"])

    second = subprocess.run([sys.executable, "-m", "rlgen.run", "pixelrnn", "--resume", str(run), "--epochs", "2"],
                            check=False, capture_output=True, text=True, env=ENV, timeout=240)
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stderr
    assert [int(r["step"]) for r in rows_of(run / "progress.csv")] == [2, 4, 6, 8]
    assert (run / "samples" / "epoch_0002.png").is_file()
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2


def test_pixelcnn_resumed_run_equals_an_uninterrupted_one(tmp_path, data, capsys):
    args = ["pixelcnn", "--dataset", "mnist", "--data-dir", str(data), "--seed", "2", *COMMON, *TINY_PIXEL]
    assert main([*args, "--epochs", "1", "--out", str(tmp_path / "a")]) == 0
    run = run_dir(tmp_path / "a", "pixelcnn-mnist-s2-*")
    assert main(["pixelcnn", "--resume", str(run), "--epochs", "2"]) == 0
    assert main([*args, "--epochs", "2", "--out", str(tmp_path / "b")]) == 0
    straight = run_dir(tmp_path / "b", "pixelcnn-mnist-s2-*")
    a = torch.load(run / "checkpoints" / "epoch_2.pt", weights_only=True)["model"]
    b = torch.load(straight / "checkpoints" / "epoch_2.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert rows_of(run / "progress.csv")[-1]["eval/loss"] == rows_of(straight / "progress.csv")[-1]["eval/loss"]
    assert "PixelCNN: sampled 4 images" in capsys.readouterr().err


def test_run_started_on_a_gpu_goes_on_with_device_cpu(tmp_path, data, capsys):
    """The run's own device is kept on resume (a CUDA run on a machine without CUDA is a one-line error naming the
    fix), and ``--device cpu`` moves it."""
    assert main(["pixelcnn", "--dataset", "mnist", "--data-dir", str(data), *COMMON, *TINY_PIXEL, "--epochs", "1",
                 "--out", str(tmp_path)]) == 0
    run = run_dir(tmp_path, "pixelcnn-mnist-s0-*")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "device": "cuda"}))
    capsys.readouterr()
    if not torch.cuda.is_available():
        assert main(["pixelcnn", "--resume", str(run), "--epochs", "2"]) == 2
        assert "no CUDA device is available; use --device cpu" in capsys.readouterr().err
    assert main(["pixelcnn", "--resume", str(run), "--epochs", "2", "--device", "cpu"]) == 0
    assert json.loads((run / "config.json").read_text())["device"] == "cpu"
    assert (run / "checkpoints" / "epoch_2.pt").is_file()


def test_max_minutes_ends_a_process_early_and_resume_can_change_it(tmp_path, data, capsys):
    assert main(["pixelcnn", "--dataset", "mnist", "--data-dir", str(data), *COMMON, *TINY_PIXEL, "--epochs", "3",
                 "--max-minutes", "1e-9", "--out", str(tmp_path)]) == 0
    run = run_dir(tmp_path, "pixelcnn-mnist-s0-*")
    assert json.loads((run / "summary.json").read_text())["epochs"] == 1
    assert "--max-minutes 1e-09 reached after epoch 1 of 3; go on with --resume" in capsys.readouterr().err
    assert main(["pixelcnn", "--resume", str(run), "--max-minutes", "60"]) == 0
    assert json.loads((run / "config.json").read_text())["max_minutes"] == 60
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["epochs"], summary["finished"]) == (3, True)


def test_pixelrnn_run_from_before_skip_connections_resumes_as_the_model_it_trained(tmp_path, data):
    """A saved config without ``skip_connections`` (written before the option) means the model without them, not
    today's default; a new run has them."""
    args = ["pixelrnn", "--variant", "rowlstm", "--dataset", "mnist", "--data-dir", str(data), *COMMON, *TINY_PIXEL]
    assert main([*args, "--epochs", "1", "--no-skip-connections", "--out", str(tmp_path / "old")]) == 0
    run = run_dir(tmp_path / "old", "pixelrnn-mnist-s0-*")
    config = json.loads((run / "config.json").read_text())
    del config["skip_connections"]  # as an older rlgen wrote it
    (run / "config.json").write_text(json.dumps(config))
    assert main(["pixelrnn", "--resume", str(run), "--epochs", "2"]) == 0
    assert json.loads((run / "config.json").read_text())["skip_connections"] is False
    assert not any(k.startswith("skips.") for k in torch.load(run / "checkpoints" / "epoch_2.pt",
                                                              weights_only=True)["model"])
    assert main([*args, "--epochs", "1", "--out", str(tmp_path / "new")]) == 0
    new = run_dir(tmp_path / "new", "pixelrnn-mnist-s0-*")
    assert any(k.startswith("skips.0.") for k in torch.load(new / "checkpoints" / "epoch_1.pt",
                                                            weights_only=True)["model"])


@pytest.mark.parametrize("flags", [["--iaf-steps", "2", "--iaf-hidden", "16", "--free-bits", "0.1"],
                                   ["--bidirectional", "--iaf-steps", "1", "--levels", "2", "--blocks-per-level", "1"]])
def test_vae_with_iaf_reports_elbo_and_importance_sampled_nll(tmp_path, data, capsys, flags):
    code = main(["vae", "--dataset", "mnist", "--data-dir", str(data), "--epochs", "1", "--out", str(tmp_path),
                 "--z-dim", "4", "--hidden", "8", "--context-dim", "8", "--iw-samples", "8", *COMMON, *flags])
    err = capsys.readouterr().err
    assert code == 0, err
    run = run_dir(tmp_path, "vae-mnist-s0-*")
    config = json.loads((run / "config.json").read_text())
    assert config["iaf_steps"] == int(flags[flags.index("--iaf-steps") + 1])
    assert config["bidirectional"] == ("--bidirectional" in flags)
    last = rows_of(run / "progress.csv")[-1]
    assert {"eval/neg_elbo_nats", "eval/nll_iw_nats", "train/kl", "train/recon_nats"} <= set(last)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_nll_iw_nats"] > 0 and summary["test_loss"] == pytest.approx(summary["test_neg_elbo_nats"])
    assert "sampled 4 images" in err and "importance samples" in err
    assert (run / "samples" / "epoch_0001.png").is_file()


def test_8bit_data_is_measured_in_bits_per_dim(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "rgb.npz", x_train=rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8),
             x_test=rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8))
    for command, flags in (("pixelcnn", ["--hidden", "3", "--layers", "1", "--output-hidden", "3"]),
                           ("vae", ["--z-dim", "2", "--hidden", "4", "--iw-samples", "2"])):
        out = tmp_path / command
        code = main([command, "--dataset", str(tmp_path / "rgb.npz"), "--epochs", "1", "--out", str(out),
                     "--batch-size", "8", "--n-samples", "4", "--device", "cpu", *flags])
        err = capsys.readouterr().err
        assert code == 0, err
        run = run_dir(out, f"{command}-rgb-s0-*")
        summary = json.loads((run / "summary.json").read_text())
        assert summary["binarize"] == "none" and 6 < summary["test_bits_per_dim"] < 10  # ~8 for uniform noise
        assert summary["test_loss"] == pytest.approx(summary["test_bits_per_dim"])
        assert "bits/dim" in err and "8-bit pixels (--binarize none)" in err
        assert matplotlib.image.imread(run / "samples" / "epoch_0001.png").shape == (2 * 10 + 2, 2 * 10 + 2, 3)


def test_binarized_mnist_trains_in_nats_evaluates_on_valid_and_can_train_on_train_and_valid(tmp_path, capsys):
    """The fixed binarisation is used as it is (Bernoulli likelihood, nats, no re-binarisation); the epoch
    evaluation is on the valid split, and --train-split train+valid trains the final model on both."""
    rng = np.random.default_rng(0)
    splits = {s: (rng.random((n, 28, 28)) < 0.2).astype(np.uint8) for s, n in (("train", 16), ("valid", 8),
                                                                                ("test", 8))}
    np.savez(tmp_path / "binarized_mnist.npz", **splits)
    for split, epochs in (("train", 1), ("train+valid", 1)):
        out = tmp_path / split
        code = main(["pixelcnn", "--dataset", "binarized_mnist", "--data-dir", str(tmp_path), "--epochs", str(epochs),
                     "--train-split", split, "--out", str(out), *COMMON, "--batch-size", "8", *TINY_PIXEL])
        err = capsys.readouterr().err
        assert code == 0, err
        run = run_dir(out, "pixelcnn-binarized_mnist-s0-*")
        config = json.loads((run / "config.json").read_text())
        assert config["eval_split"] == "valid" and config["binarize"] == "none"
        assert "nats/image" in err and "Bernoulli likelihood, in nats per image" in err
        assert "train loss" in err and "eval loss" in err  # the two losses told apart on the console
        # waits report progress in a pipe too: the epoch's evaluation and the pixel-by-pixel sampling
        assert "evaluating: 1/1 batches (100%)" in err and "sampling 4 images: 28/28 rows (100%)" in err
        summary = json.loads((run / "summary.json").read_text())
        assert summary["steps"] == (2 if split == "train" else 3)  # 16 or 24 images in batches of 8
        assert summary["test_loss"] == pytest.approx(summary["test_nats"])  # a Bernoulli NLL in nats, not bits/dim
        assert 100 < summary["test_nats"] < 784 * np.log(2) + 50


def test_bad_options_are_clean_errors(tmp_path, data, capsys):
    def fails(argv: list[str], *words: str) -> None:
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err, err
        for word in words:
            assert word in err, err

    fails(["pixelrnn", "--variant", "gru"], "--variant")
    fails(["vae", "--iaf-steps", "-1"], "--iaf-steps")
    fails(["pixelcnn", "--max-minutes", "0"], "--max-minutes", "must be a finite number > 0")
    fails(["pixelcnn", "--max-minutes", "-1"], "--max-minutes", "must be a finite number > 0")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "rgb.npz", x=rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8))
    fails(["pixelcnn", "--dataset", str(tmp_path / "rgb.npz"), "--hidden", "4", "--no-evaluate", "--out",
           str(tmp_path / "runs"), "--batch-size", "8"], "multiple of the 3 colour channels")
    fails(["pixelcnn", "--dataset", str(tmp_path / "rgb.npz"), "--out", str(tmp_path / "runs")], "--no-evaluate")


def test_help_documents_the_likelihood_flags(capsys):
    for command, flags in (("vae", ["--iaf-steps", "--free-bits", "--iw-samples", "--bidirectional", "--binarize"]),
                           ("pixelrnn", ["--variant", "--layers", "--binarize"]), ("pixelcnn", ["--output-hidden"])):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        out = capsys.readouterr().out
        assert exit_info.value.code == 0 and all(flag in out for flag in flags), out
