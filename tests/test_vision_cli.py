"""``rlgen gan`` end to end on tiny generated data, the shared image trainer, and the PNG grid writer."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rlgen.cli import main
from rlgen.common.run_dir import RunDir
from rlgen.vision.datasets import Batch, ImageDataset
from rlgen.vision.images import encode_png, make_grid, save_image_grid
from rlgen.vision.trainer import LikelihoodModel, Optimizers, Trainer, TrainerConfig, lr_factor
from tests.cli_helpers import ENV, fails_cleanly

torch.set_num_threads(1)
TINY = ["--batch-size", "16", "--ngf", "8", "--ndf", "8", "--z-dim", "8", "--n-samples", "9", "--log-every", "2",
        "--device", "cpu"]


def write_idx(path: Path, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x08" + bytes([array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
                     + array.tobytes())


def tiny_mnist_dir(root: Path, n: int = 96) -> Path:
    """Blobs of light on black in the official MNIST file layout (uncompressed IDX)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:28, :28]
    centres = rng.uniform(8, 20, (n, 2))
    images = (255 * np.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 20)).astype(np.uint8)
    write_idx(root / "mnist" / "train-images-idx3-ubyte", images)
    write_idx(root / "mnist" / "train-labels-idx1-ubyte", rng.integers(0, 10, n))
    return root


def steps_of(progress: Path) -> list[int]:
    with open(progress) as f:
        return [int(float(row["step"])) for row in csv.DictReader(f)]




# ----------------------------------------------------------------------------------------------------------------
# The gan command


@pytest.mark.slow
def test_gan_run_end_to_end_and_resume(tmp_path, capsys):
    data = tiny_mnist_dir(tmp_path / "data")
    out = tmp_path / "runs"
    first = subprocess.run([sys.executable, "-m", "rlgen.run", "gan", "--dataset", "mnist", "--data-dir", str(data),
                            "--no-verify-checksums", "--epochs", "1", "--seed", "1", "--out", str(out), *TINY],
                           check=False, capture_output=True, text=True, env=ENV, timeout=240)
    assert first.returncode == 0, first.stderr
    (run,) = out.glob("gan-mnist-s1-*")
    assert str(run) in first.stdout
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"] == "mnist" and config["epochs"] == 1 and config["batch_size"] == 16
    assert Path(config["data_dir"]).is_absolute()
    assert steps_of(run / "progress.csv") == [2, 4, 6]  # 96 images / 16 = 6 steps
    png = run / "samples" / "epoch_0001.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(png).shape == (3 * 30 + 2, 3 * 30 + 2)  # 3x3 grid of 28x28 + 2px padding
    ckpt = torch.load(run / "checkpoints" / "epoch_1.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["step"] == 6 and set(ckpt["optimizers"]) == {"d", "g"}
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["file"] == "epoch_1.pt"
    assert any((run / "tb").iterdir())

    # A resume that cannot go on (its data moved away) leaves the run as it was: config and provenance untouched.
    before = {name: (run / name).read_bytes() for name in ("config.json", "provenance.json")}
    (data / "mnist").rename(data / "moved")
    fails_cleanly(capsys, ["gan", "--resume", str(run), "--epochs", "2"], "mnist")
    assert {name: (run / name).read_bytes() for name in before} == before
    (data / "moved").rename(data / "mnist")

    # --resume with the run directory alone (its config has the dataset); a larger --epochs extends the run.
    second = subprocess.run([sys.executable, "-m", "rlgen.run", "gan", "--resume", str(run), "--epochs", "2"],
                            check=False, capture_output=True, text=True, env=ENV, timeout=240)
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stderr and str(run) in second.stdout
    assert (run / "checkpoints" / "epoch_2.pt").is_file() and (run / "samples" / "epoch_0002.png").is_file()
    assert steps_of(run / "progress.csv") == [2, 4, 6, 8, 10, 12]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["steps"] == 12

    # The resumed run is the run that was never interrupted (same seed, CPU, one thread).
    assert main(["gan", "--dataset", "mnist", "--data-dir", str(data), "--no-verify-checksums", "--epochs", "2",
                 "--seed", "1", "--out", str(tmp_path / "straight"), *TINY]) == 0
    (straight,) = (tmp_path / "straight").glob("gan-mnist-s1-*")
    a = torch.load(run / "checkpoints" / "epoch_2.pt", weights_only=True)["model"]
    b = torch.load(straight / "checkpoints" / "epoch_2.pt", weights_only=True)["model"]
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key

    # A damaged newest checkpoint is a clean error; without it the run resumes from the one before.
    (run / "checkpoints" / "epoch_2.pt").write_bytes(b"truncated")
    assert main(["gan", "--resume", str(run), "--epochs", "3"]) == 2
    (run / "checkpoints" / "epoch_2.pt").unlink()
    assert main(["gan", "--resume", str(run), "--epochs", "3"]) == 0
    assert steps_of(run / "progress.csv") == [2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert torch.load(run / "checkpoints" / "epoch_3.pt", weights_only=True)["step"] == 18
    # Resuming a finished run trains nothing and keeps the summary's training speed.
    speed = json.loads((run / "summary.json").read_text())["images_per_s"]
    assert speed > 0 and main(["gan", "--resume", str(run)]) == 0
    assert steps_of(run / "progress.csv")[-1] == 18
    assert json.loads((run / "summary.json").read_text())["images_per_s"] == speed


def test_gan_on_rgb_npz_with_every_technique(tmp_path, capsys):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "tiny_rgb.npz", x=rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8),
             y=np.zeros(32, np.int64))
    code = main(["gan", "--dataset", str(tmp_path / "tiny_rgb.npz"), "--epochs", "1", "--out", str(tmp_path / "runs"),
                 *TINY, "--feature-matching", "--minibatch-discrimination", "4", "--historical-averaging", "0.01",
                 "--label-smoothing", "0.1", "--label-noise", "0.05", "--virtual-batch-norm", "--minibatch-std",
                 "--unroll-steps", "1"])
    assert code == 0, capsys.readouterr().err
    (run,) = (tmp_path / "runs").glob("gan-tiny_rgb-s0-*")
    config = json.loads((run / "config.json").read_text())
    assert config["feature_matching"] and config["minibatch_discrimination"] == 4 and config["unroll_steps"] == 1
    assert matplotlib.image.imread(run / "samples" / "epoch_0001.png").shape == (3 * 34 + 2, 3 * 34 + 2, 3)
    ckpt = torch.load(run / "checkpoints" / "epoch_1.pt", weights_only=True)
    assert "generator.z_ref" in ckpt["model"] and "d_history.count" in ckpt["model"]


def two_class_npz(path: Path, n_train: int = 512, n_test: int = 32) -> Path:
    """28x28 images lit in their top half (class 0) or bottom half (class 1), with train and test splits."""
    rng = np.random.default_rng(2)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 2
        x = rng.integers(0, 40, (n, 28, 28), dtype=np.uint8)
        x[y == 0, :14] += 200
        x[y == 1, 14:] += 200
        return x, y
    (x_train, y_train), (x_test, y_test) = split(n_train), split(n_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def test_gan_scores_its_samples_with_a_cached_classifier(tmp_path, capsys):
    data = two_class_npz(tmp_path / "halves.npz")
    classifier = tmp_path / "classifier.pt"
    flags = ["gan", "--dataset", str(data), "--epochs", "1", "--out", str(tmp_path / "runs"), *TINY,
             "--score-samples", "40", "--metrics-classifier", str(classifier), "--classifier-epochs", "4", "--limit-images", "64"]
    assert main(flags) == 0, capsys.readouterr().err
    (run,) = (tmp_path / "runs").glob("gan-halves-s0-*")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_samples"] == 40 and summary["n_reference"] == 32
    assert summary["fid"] > 0 and 1.0 <= summary["inception_score"] <= 2.0
    assert summary["inception_score_real"] > 1.5  # the classifier tells the two halves apart
    assert 0 <= summary["fid_real"] < summary["fid"]  # real training images are closer to the test set than samples
    assert summary["metrics_classifier"] == str(classifier) and classifier.is_file()
    # A second run is scored with the same (cached, not retrained) classifier.
    stamp = classifier.stat().st_mtime_ns
    assert main([*flags, "--seed", "1"]) == 0, capsys.readouterr().err
    assert classifier.stat().st_mtime_ns == stamp


def test_missing_data_is_one_clear_error_and_leaves_no_run(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RLGEN_DATA", raising=False)
    fails_cleanly(capsys, ["gan", "--dataset", "mnist", "--data-dir", str(tmp_path / "empty"), "--out",
                           str(tmp_path / "runs")], "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "--download")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    fails_cleanly(capsys, ["gan", "--out", str(tmp_path / "runs")], "--dataset")


def test_bad_data_is_a_clean_error(tmp_path, capsys):
    data = tiny_mnist_dir(tmp_path / "data", n=20)
    fails_cleanly(capsys, ["gan", "--dataset", "mnist", "--data-dir", str(data), "--out", str(tmp_path / "runs")],
                  "checksum mismatch", "train-images-idx3-ubyte")
    np.savez(tmp_path / "small.npz", x=np.zeros((40, 16, 16), np.uint8))
    fails_cleanly(capsys, ["gan", "--dataset", str(tmp_path / "small.npz"), "--out", str(tmp_path / "runs")],
                  "28x28 or 32x32")
    fails_cleanly(capsys, ["gan", "--dataset", "mnist", "--data-dir", str(data), "--no-verify-checksums",
                           "--batch-size", "64", "--out", str(tmp_path / "runs")], "fewer than one batch")
    fails_cleanly(capsys, ["gan", "--dataset", "mnist", "--label-smoothing", "2"], "--label-smoothing")
    (tmp_path / "text.npz").write_text("not an archive\n")
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object))
    for name, words in (("text.npz", "not a zip archive"), ("objects.npz", "Python objects")):
        line = fails_cleanly(capsys, ["gan", "--dataset", str(tmp_path / name), "--out", str(tmp_path / "runs")],
                             words)
        assert "allow_pickle" not in line  # numpy's advice to load it unsafely is not passed on


@pytest.mark.parametrize("argv,words", [
    (["gan", "--batch-size", "1000"], ["fewer than one batch of 1000"]),
    (["ssgan", "--labels", "7", "--batch-size", "16"], ["--labels", "multiple"]),
    (["infogan", "--real-clustering", "1", "--categorical", "--batch-size", "16"], ["--categorical K"]),
    (["infogan", "--preset", "paper", "--real-clustering", "1", "--categorical", "--batch-size", "16"],
     ["--categorical K"]),
])
def test_options_the_model_refuses_fail_alone_before_the_run_directory(tmp_path, capsys, argv, words):
    """The error line is all the user sees: no 'run directory' line for a directory that is then removed."""
    data = two_class_npz(tmp_path / "halves.npz", n_train=64, n_test=16)
    code = main([*argv, "--dataset", str(data), "--device", "cpu", "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and all(word in err[0] for word in words), err
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------------------------------------------
# The trainer with another kind of model (what VAE/PixelCNN will use)


class PixelBernoulli(LikelihoodModel):
    """Independent Bernoulli pixels: the smallest likelihood model."""

    def __init__(self, shape: tuple[int, int, int]):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(shape))

    def loss(self, batch: Batch):
        nll = F.binary_cross_entropy_with_logits(self.logits.expand_as(batch.x), batch.x, reduction="none")
        nats = nll.flatten(1).sum(1).mean()
        return nats, {"bits_per_dim": nats / (batch.x[0].numel() * np.log(2))}

    def sample(self, n: int) -> torch.Tensor:
        return torch.bernoulli(torch.sigmoid(self.logits).expand(n, *self.logits.shape))


def test_a_step_under_autocast_is_seen_by_the_next_forward_pass():
    # A GAN's generator step follows the discriminator's in one autocast region: it must see the updated weights,
    # not the bf16 copies autocast cast before the update (torch.autocast is emulated where the CPU lacks bf16)
    net = nn.Linear(4, 4)
    opt = Optimizers({"d": torch.optim.SGD(net.parameters(), lr=0.5)}, torch.device("cpu"))
    x = torch.randn(8, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        before = net(x)
        opt.step("d", before.float().square().mean())
        after = net(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fresh = net(x)
    assert not torch.equal(after, before) and torch.equal(after, fresh)


def test_trainer_runs_a_likelihood_model_with_evaluation(tmp_path):
    images = np.zeros((64, 1, 28, 28), np.uint8)
    images[:, :, 10:18, 10:18] = 230
    data = ImageDataset("square", images)
    run = RunDir.create(tmp_path, "test", "square", 0, {"command": "test"})
    cfg = TrainerConfig(epochs=3, batch_size=16, lr=0.1, log_every=0, n_samples=4, binarize="dynamic")
    summary = Trainer(PixelBernoulli((1, 28, 28)), run, data, cfg, "cpu", eval_data=data).fit()
    assert summary["epochs"] == 3 and summary["steps"] == 12
    with open(run.path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [4, 8, 12]
    losses = [float(r["eval/loss"]) for r in rows]
    assert losses[-1] < losses[0] and "eval/bits_per_dim" in rows[0] and "train/loss" in rows[0]
    assert sorted(p.name for p in (run.path / "checkpoints").glob("*.pt")) == ["epoch_2.pt", "epoch_3.pt"]
    assert (run.path / "samples" / "epoch_0003.png").is_file()


class InterruptedPixelBernoulli(PixelBernoulli):
    """Raises KeyboardInterrupt (as Ctrl-C would) before its training step number ``at``."""

    def __init__(self, shape, at: int):
        super().__init__(shape)
        self.at, self.calls = at, 0

    def training_step(self, batch, opt):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return super().training_step(batch, opt)


def test_interrupted_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path):
    """Ctrl-C in the middle of epoch 2 writes a checkpoint there; the resumed run skips the batches already trained
    on and ends exactly where an uninterrupted run does (same order, same binarisation draws)."""
    rng = np.random.default_rng(0)
    data = ImageDataset("noise", rng.integers(0, 256, (64, 1, 28, 28), dtype=np.uint8))
    cfg = TrainerConfig(epochs=3, batch_size=16, lr=0.05, log_every=0, n_samples=4, binarize="dynamic")

    def fit(model, out, resumed_run=None):
        run = resumed_run or RunDir.create(out, "test", "noise", 0, {"command": "test"})
        Trainer(model, run, data, cfg, "cpu").fit()
        return run

    torch.manual_seed(0)
    straight = PixelBernoulli((1, 28, 28))
    fit(straight, tmp_path / "a")
    torch.manual_seed(0)
    interrupted = InterruptedPixelBernoulli((1, 28, 28), at=7)  # steps 1-6 done: 2 batches into epoch 2
    run = RunDir.create(tmp_path / "b", "test", "noise", 0, {"command": "test"})
    with pytest.raises(KeyboardInterrupt):
        Trainer(interrupted, run, data, cfg, "cpu").fit()
    latest = json.loads((run.path / "checkpoints" / "latest.json").read_text())
    assert latest == {"epoch": 1, "step": 6, "file": "epoch_1_step_6.pt", "steps_per_epoch": 4,
                      "kept": [{"epoch": 1, "step": 4, "file": "epoch_1.pt", "steps_per_epoch": 4},
                               {"epoch": 1, "step": 6, "file": "epoch_1_step_6.pt", "steps_per_epoch": 4}]}
    assert (run.path / "checkpoints" / "epoch_1.pt").is_file()  # the last whole epoch's checkpoint stays
    resumed = PixelBernoulli((1, 28, 28))
    summary = Trainer(resumed, RunDir(run.path, run.config, resumed=True), data, cfg, "cpu").fit()
    assert summary["steps"] == 12 and summary["epochs"] == 3
    torch.testing.assert_close(resumed.logits, straight.logits, rtol=0, atol=0)
    assert sorted(p.name for p in (run.path / "checkpoints").glob("*.pt")) == ["epoch_2.pt", "epoch_3.pt"]


def test_max_minutes_stops_after_an_epoch_and_a_resumed_run_goes_on_to_the_same_result(tmp_path):
    """A process past ``max_minutes`` stops at the end of an epoch, with its checkpoint, samples and summary
    written; each resumed process gets the budget afresh, and without one the run ends where an uninterrupted run
    does."""
    rng = np.random.default_rng(0)
    data = ImageDataset("noise", rng.integers(0, 256, (64, 1, 28, 28), dtype=np.uint8))
    cfg = TrainerConfig(epochs=3, batch_size=16, lr=0.05, log_every=0, n_samples=4, sample_every=5,
                        binarize="dynamic")
    torch.manual_seed(0)
    straight = PixelBernoulli((1, 28, 28))
    Trainer(straight, RunDir.create(tmp_path / "a", "test", "noise", 0, {"command": "test"}), data, cfg).fit()

    torch.manual_seed(0)
    run = RunDir.create(tmp_path / "b", "test", "noise", 0, {"command": "test"})
    timed = dataclasses.replace(cfg, max_minutes=1e-9)  # past it after any epoch
    summary = Trainer(PixelBernoulli((1, 28, 28)), run, data, timed).fit()
    assert (summary["epochs"], summary["steps"], summary["finished"]) == (1, 4, False)
    assert (run.path / "checkpoints" / "epoch_1.pt").is_file()
    assert (run.path / "samples" / "epoch_0001.png").is_file()  # the last epoch of a process gets its grid
    summary = Trainer(PixelBernoulli((1, 28, 28)), RunDir(run.path, run.config, resumed=True), data, timed).fit()
    assert (summary["epochs"], summary["finished"]) == (2, False)
    resumed = PixelBernoulli((1, 28, 28))
    summary = Trainer(resumed, RunDir(run.path, run.config, resumed=True), data, cfg).fit()
    assert (summary["epochs"], summary["steps"], summary["finished"]) == (3, 12, True)
    torch.testing.assert_close(resumed.logits, straight.logits, rtol=0, atol=0)


def test_learning_rate_falls_linearly_over_the_last_fraction_and_a_resume_keeps_the_schedule(tmp_path):
    assert [lr_factor(e, 6, 1 / 3) for e in range(6)] == pytest.approx([1, 1, 1, 1, 1, 0.5])  # min(1, (6 - e) / 2)
    assert [lr_factor(e, 300, 1 / 3) for e in (199, 200, 299)] == pytest.approx([1, 1, 0.01])  # improved-gan's
    assert lr_factor(5, 6, 0.0) == 1.0
    data = ImageDataset("noise", np.random.default_rng(0).integers(0, 256, (32, 1, 28, 28), dtype=np.uint8))
    cfg = TrainerConfig(epochs=4, batch_size=16, lr=0.04, lr_decay_fraction=0.5, log_every=0, n_samples=4,
                        binarize="dynamic")
    torch.manual_seed(0)
    straight = PixelBernoulli((1, 28, 28))
    run = RunDir.create(tmp_path / "a", "test", "noise", 0, {"command": "test"})
    Trainer(straight, run, data, cfg).fit()
    with open(run.path / "progress.csv") as f:
        assert [float(r["train/lr"]) for r in csv.DictReader(f)] == pytest.approx([0.04, 0.04, 0.04, 0.02])
    torch.manual_seed(0)
    run = RunDir.create(tmp_path / "b", "test", "noise", 0, {"command": "test"})
    Trainer(PixelBernoulli((1, 28, 28)), run, data, dataclasses.replace(cfg, max_minutes=1e-9)).fit()
    resumed = PixelBernoulli((1, 28, 28))  # its optimiser starts at lr 0.04; the checkpoint's initial rate rules
    Trainer(resumed, RunDir(run.path, run.config, resumed=True), data, dataclasses.replace(cfg, lr=1.0)).fit()
    torch.testing.assert_close(resumed.logits, straight.logits, rtol=0, atol=0)


class InterruptedEvaluation(PixelBernoulli):
    """Raises KeyboardInterrupt in its first evaluation pass."""

    interrupted = False

    def evaluation_step(self, batch):
        if not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt
        return super().evaluation_step(batch)


def test_interrupted_during_an_epochs_evaluation_redoes_it_on_resume(tmp_path):
    """Every batch of epoch 1 was trained, its test row not yet written: the resumed run trains nothing more for
    epoch 1 and writes the row (and the sample grid) it missed."""
    data = ImageDataset("noise", np.random.default_rng(0).integers(0, 256, (32, 1, 28, 28), dtype=np.uint8))
    cfg = TrainerConfig(epochs=2, batch_size=16, lr=0.05, log_every=0, n_samples=4, binarize="dynamic")
    run = RunDir.create(tmp_path, "test", "noise", 0, {"command": "test"})
    with pytest.raises(KeyboardInterrupt):
        Trainer(InterruptedEvaluation((1, 28, 28)), run, data, cfg, "cpu", eval_data=data).fit()
    assert json.loads((run.path / "checkpoints" / "latest.json").read_text())["step"] == 2
    Trainer(PixelBernoulli((1, 28, 28)), RunDir(run.path, run.config, resumed=True), data, cfg, "cpu",
            eval_data=data).fit()
    with open(run.path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["step"]), int(float(r["time/epoch"]))) for r in rows] == [(2, 1), (4, 2)]
    assert all(r["eval/loss"] for r in rows) and (run.path / "samples" / "epoch_0001.png").is_file()


def test_evaluation_averages_per_image_when_the_last_batch_is_short(tmp_path):
    """20 test images in batches of 16 and 4: the 4 count for 4 images, not for a whole batch."""
    images = np.zeros((20, 1, 28, 28), np.uint8)
    images[16:] = 255  # the short last batch is all white
    data = ImageDataset("split", images)
    model = PixelBernoulli((1, 28, 28))
    with torch.no_grad():
        model.logits.fill_(2.0)  # white is likely, black is not: the two batches' losses differ
    run = RunDir.create(tmp_path, "test", "split", 0, {"command": "test"})
    cfg = TrainerConfig(epochs=1, batch_size=16, log_every=0, n_samples=4)
    metrics = Trainer(model, run, data, cfg, "cpu", eval_data=data).evaluate()
    with torch.no_grad():
        per_image = model.loss(Batch(torch.from_numpy(images).float() / 255))[0].item()
    assert metrics["loss"] == pytest.approx(per_image, rel=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# PNG grids


def test_png_grid_round_trips_through_a_png_reader(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.random((5, 3, 6, 4)).astype(np.float32)
    grid = make_grid(rgb, nrow=3, padding=1)
    assert grid.shape == (2 * 7 + 1, 3 * 5 + 1, 3)
    np.testing.assert_array_equal(grid[1:7, 1:5], np.rint(rgb[0].transpose(1, 2, 0) * 255).astype(np.uint8))
    np.testing.assert_array_equal(grid[8:14, 6:10], np.rint(rgb[4].transpose(1, 2, 0) * 255).astype(np.uint8))
    assert (grid[8:14, 11:15] == 255).all()  # the empty sixth cell is padding
    path = save_image_grid(torch.from_numpy(rgb), tmp_path / "rgb.png", nrow=3, padding=1)
    np.testing.assert_array_equal(np.rint(matplotlib.image.imread(path) * 255).astype(np.uint8), grid)
    grey = rng.random((4, 1, 5, 5))
    read = matplotlib.image.imread(save_image_grid(grey, tmp_path / "grey.png"))
    np.testing.assert_array_equal(np.rint(read * 255).astype(np.uint8), make_grid(grey))
    with pytest.raises(ValueError):
        encode_png(np.zeros((2, 2, 4), np.uint8))


@pytest.mark.parametrize("command", ["gan", "ssgan", "infogan", "vae", "pixelcnn", "pixelrnn"])
def test_each_model_option_has_one_default(command):
    """An option's default is its dataclass field's (data, trainer, model); vision.yaml sets one only to differ."""
    from rlgen.common.config import packaged_config
    from rlgen.vision.config import option_defaults

    section = packaged_config("vision.yaml")[command]
    dataclass_defaults = option_defaults(command)
    restated = [key for key, value in section["defaults"].items()
                if key in dataclass_defaults and value == dataclass_defaults[key]]
    assert not restated, f"vision.yaml restates {command}'s dataclass defaults: {restated}"
    for task, entry in section.get("tasks", {}).items():  # a task entry sets only known options
        assert set(entry) <= set(dataclass_defaults) | set(section["defaults"]), (task, entry)
