"""The semi-supervised GAN: the K-class discriminator's real/fake logit and losses (the paper's formulation, checked
by hand), the labelled subset, the improved-gan layers (weight norm, Gaussian noise), the discriminator learning,
the learning-rate schedule and moving average, exact test error, and the ``ssgan`` command end to end."""

from __future__ import annotations

import io
import json
import math

import matplotlib.image
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rlgen.cli import main
from rlgen.common.errors import UserError
from rlgen.vision.datasets import Batch
from rlgen.vision.gan.ssgan import (
    SSGAN,
    GaussianNoise,
    SSGANOptions,
    WeightNormDense,
    class_balanced_subset,
    real_fake_logit,
    ssgan_losses,
)
from rlgen.vision.trainer import Optimizers

torch.set_num_threads(1)
CPU = torch.device("cpu")
TINY = {"d_hidden": (32, 16), "g_hidden": (16,), "z_dim": 8}


def small(n_labelled: int = 20, eval_size: int | None = None, **options) -> SSGAN:
    torch.manual_seed(0)
    x = torch.randint(0, 256, (n_labelled, 1, 28, 28), dtype=torch.uint8)
    y = torch.arange(n_labelled) % 10
    return SSGAN(SSGANOptions(**{**TINY, **options}), x, y, eval_size)


def optimizers(model: SSGAN, lr: float = 3e-3) -> Optimizers:
    return Optimizers({k: torch.optim.Adam(list(v["params"]), lr, betas=(0.5, 0.999), eps=v["eps"])
                       for k, v in model.optimizer_groups().items()}, CPU)


# ----------------------------------------------------------------------------------------------------------------
# The formulation


def test_real_fake_logit_is_the_logsumexp_of_the_class_logits():
    model = small()
    x = torch.rand(6, 1, 28, 28)
    model.eval()
    logits = model.discriminator(x)
    assert logits.shape == (6, 10)
    lse = real_fake_logit(logits)
    assert torch.allclose(lse, torch.log(torch.exp(logits).sum(1)), atol=1e-5)
    # D(x) = Z / (Z + 1): the fake class is an implicit (K+1)-th logit fixed at 0
    z = torch.exp(logits).sum(1)
    assert torch.allclose(torch.sigmoid(lse), z / (z + 1), atol=1e-6)
    with_fake = torch.cat([logits, torch.zeros(6, 1)], 1)
    assert torch.allclose(torch.softmax(with_fake, 1)[:, :10].sum(1), torch.sigmoid(lse), atol=1e-6)


def test_losses_match_the_paper_on_a_hand_computed_example():
    lab = torch.tensor([[math.log(3.0), 0.0, 0.0], [0.0, math.log(2.0), 0.0]])  # Z = 5 and 4
    labels = torch.tensor([0, 2])
    unl = torch.tensor([[0.0, 0.0, math.log(2.0)]])  # Z = 4
    fake = torch.tensor([[math.log(0.5), math.log(0.25), math.log(0.25)]])  # Z = 1
    loss_lab, loss_unl = ssgan_losses(lab, labels, unl, fake)
    # loss_lab = -mean(l_y) + mean(log Z) = cross-entropy
    expected_lab = -(math.log(3.0) + 0.0) / 2 + (math.log(5.0) + math.log(4.0)) / 2
    assert loss_lab.item() == pytest.approx(expected_lab, abs=1e-6)
    assert loss_lab.item() == pytest.approx(F.cross_entropy(lab, labels).item(), abs=1e-6)
    # loss_unl = -0.5 log Z_unl + 0.5 log(1 + Z_unl) + 0.5 log(1 + Z_fake)
    #          = -0.5 log D(x_unl) - 0.5 log(1 - D(G(z))) with D = Z / (Z + 1)
    expected_unl = -0.5 * math.log(4.0) + 0.5 * math.log(5.0) + 0.5 * math.log(2.0)
    assert loss_unl.item() == pytest.approx(expected_unl, abs=1e-6)
    assert expected_unl == pytest.approx(-0.5 * math.log(4 / 5) - 0.5 * math.log(1 - 1 / 2))


def test_unlabelled_loss_is_the_gan_loss_of_the_logsumexp_logit():
    torch.manual_seed(1)
    lab, unl, fake = torch.randn(8, 10), torch.randn(8, 10) * 3, torch.randn(8, 10) * 3
    labels = torch.randint(0, 10, (8,))
    _, loss_unl = ssgan_losses(lab, labels, unl, fake)
    lse_unl, lse_fake = torch.logsumexp(unl, 1), torch.logsumexp(fake, 1)
    bce = 0.5 * (F.binary_cross_entropy_with_logits(lse_unl, torch.ones(8))
                 + F.binary_cross_entropy_with_logits(lse_fake, torch.zeros(8)))
    assert torch.allclose(loss_unl, bce, atol=1e-6)
    # the discriminator loss adds the unlabelled loss with its weight
    model = small(unlabeled_weight=0.25)
    model.eval()  # no noise: both evaluations see the same logits
    x = torch.rand(4, 1, 28, 28)
    y = torch.tensor([0, 1, 2, 3])
    loss, metrics = model.discriminator_loss(x, y, x.flip(0), x * 0.5)
    assert loss.item() == pytest.approx(metrics["loss_lab"].item() + 0.25 * metrics["loss_unl"].item(), rel=1e-5)


def test_generator_loss_is_feature_matching_on_the_last_hidden_layer():
    model = small()
    model.eval()  # no noise, so the features can be recomputed exactly
    real, fake = torch.rand(8, 1, 28, 28), model.sample(8)
    h = real.flatten(1)
    hf = fake.flatten(1)
    for layer in model.discriminator.hidden:
        h, hf = layer(h), layer(hf)
    assert h.shape == (8, 16)  # the last hidden layer, the features of layers[-3] in the original
    expected = (h.mean(0) - hf.mean(0)).square().mean()
    assert torch.allclose(model.generator_loss(real, fake), expected, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# The labelled subset


def test_labelled_subset_is_class_balanced_and_seed_determined():
    labels = np.random.default_rng(0).integers(0, 10, 5000)
    subset = class_balanced_subset(labels, 100, seed=3)
    assert len(subset) == 100 and len(set(subset)) == 100
    assert np.array_equal(np.bincount(labels[subset], minlength=10), np.full(10, 10))
    assert np.array_equal(subset, class_balanced_subset(labels, 100, seed=3))
    assert not np.array_equal(subset, class_balanced_subset(labels, 100, seed=4))
    # the first examples of each class in the seed's permutation of the data (the original's selection)
    order = np.random.default_rng(3).permutation(5000)
    assert np.array_equal(subset[:10], order[labels[order] == 0][:10])
    with pytest.raises(UserError, match="multiple of the number of classes"):
        class_balanced_subset(labels, 105, seed=0)
    with pytest.raises(UserError, match="class 1"):
        class_balanced_subset(np.array([0, 0, 1]), 4, seed=0)


def test_labelled_batches_are_a_stream_of_permutations_of_the_subset():
    model = small(n_labelled=10)
    model.labelled_y.copy_(torch.arange(10))  # label i marks labelled example i
    torch.manual_seed(0)
    drawn = torch.cat([model.labelled_batch(4)[1] for _ in range(5)])  # 20 = two permutations
    assert sorted(drawn[:10].tolist()) == list(range(10)) and sorted(drawn[10:].tolist()) == list(range(10))
    assert drawn[:10].tolist() != drawn[10:].tolist()  # reshuffled each pass
    x, _ = model.labelled_batch(3)
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1


# ----------------------------------------------------------------------------------------------------------------
# Layers


def test_weight_norm_dense_layer():
    torch.manual_seed(0)
    layer = WeightNormDense(6, 4)
    with torch.no_grad():
        layer.scale.copy_(torch.tensor([0.5, 1.0, 2.0, 3.0]))
    assert torch.allclose(layer.weight.norm(dim=1), layer.scale, atol=1e-6)  # each unit's weight has norm scale
    x = torch.randn(5, 6)
    out = layer(x)
    with torch.no_grad():
        layer.theta.mul_(7.0)  # the direction alone matters
    assert torch.allclose(layer(x), out, atol=1e-5)
    assert torch.allclose(out, F.relu(x @ layer.weight.T + layer.bias), atol=1e-6)
    assert not layer.scale.requires_grad and WeightNormDense(6, 4, None, train_scale=True).scale.requires_grad
    # data-dependent initialisation: standardised pre-activations on the batch, and the layer keeps them
    batch = torch.randn(200, 6) * 3 + 1
    init_out = layer(batch, init=True)
    pre = layer.pre_activation(batch)
    assert torch.allclose(pre.mean(0), torch.zeros(4), atol=1e-5)
    assert torch.allclose(pre.std(0, unbiased=False), torch.ones(4), atol=1e-4)
    assert torch.allclose(init_out, F.relu(pre), atol=1e-5)


def test_discriminator_initialisation_standardises_every_layer():
    model = small(input_noise=0.0, hidden_noise=0.0)  # noise off, so every layer sees exactly the init batch
    x = torch.rand(300, 1, 28, 28)
    model.initialize(x)
    h = x.flatten(1)
    for layer in [*model.discriminator.hidden, model.discriminator.out]:
        pre = layer.pre_activation(h)
        assert pre.mean(0).abs().max() < 1e-4 and (pre.std(0, unbiased=False) - 1).abs().max() < 1e-3
        h = layer(h)
    # with the original's noise on, the initialisation batch is seen through the noise (as in init_param)
    noisy = small()
    noisy.initialize(x)
    pre = noisy.discriminator.hidden[0].pre_activation(x)
    assert 0 < (pre.std(0, unbiased=False) - 1).abs().max() < 0.3


def test_gaussian_noise_only_in_training_mode():
    noise = GaussianNoise(0.5)
    x = torch.zeros(20000)
    y = noise(x)
    assert y.std().item() == pytest.approx(0.5, rel=0.03) and abs(y.mean().item()) < 0.02
    noise.eval()
    assert torch.equal(noise(x), x)
    assert torch.equal(GaussianNoise(0.0)(x), x)
    model = small()
    x = torch.rand(4, 1, 28, 28)
    assert not torch.allclose(model.discriminator(x), model.discriminator(x))  # noisy in training mode
    model.eval()
    assert torch.equal(model.discriminator(x), model.discriminator(x))


# ----------------------------------------------------------------------------------------------------------------
# Training


def test_discriminator_steps_lower_the_labelled_loss_on_a_fixed_batch():
    model = small(n_labelled=20)
    model.initialize(torch.rand(100, 1, 28, 28))
    g = torch.Generator().manual_seed(1)
    x_lab, y_lab = model.labelled_x.float() / 255, model.labelled_y
    x_unl = torch.rand(20, 1, 28, 28, generator=g)
    with torch.no_grad():
        fake = model.generator(torch.rand(20, 8, generator=g))
    opt = optimizers(model)

    def losses() -> tuple[float, float]:
        torch.manual_seed(123)  # the same noise draws for each evaluation
        _, metrics = model.discriminator_loss(x_lab, y_lab, x_unl, fake)
        return metrics["loss_lab"].item(), metrics["loss_unl"].item()

    start = losses()
    for _ in range(25):
        loss, _ = model.discriminator_loss(x_lab, y_lab, x_unl, fake)
        opt.step("d", loss)
    end = losses()
    assert end[0] < 0.5 * start[0], (start, end)
    assert end[1] < start[1], (start, end)


def test_training_steps_update_both_players_and_the_moving_average():
    model = small(ema=0.1)
    opt = optimizers(model)
    d0 = [p.detach().clone() for p in model.discriminator.parameters()]
    g0 = [p.detach().clone() for p in model.generator.parameters()]
    metrics = model.training_step(Batch(torch.rand(10, 1, 28, 28)), opt)
    assert {"loss_lab", "loss_unl", "loss_gen", "train_error"} <= set(metrics)
    assert all(math.isfinite(float(v)) for v in metrics.values())
    assert any(not torch.equal(a, b) for a, b in zip(d0, model.discriminator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()))
    assert model.num_steps == 1
    # the moving average starts at 0 and is bias-corrected: after one step it is the discriminator itself
    avg = model.averaged_discriminator()
    for a, p in zip(avg.parameters(), model.discriminator.parameters()):
        assert torch.allclose(a, p, atol=1e-6)
    after_one = [p.detach().clone() for p in model.discriminator.parameters()]
    model.training_step(Batch(torch.rand(10, 1, 28, 28)), opt)
    now = list(model.discriminator.parameters())
    for a, p1, p2 in zip(model.averaged_discriminator().parameters(), after_one, now):
        expected = (0.9 * 0.1 * p1 + 0.1 * p2) / (1 - 0.9 ** 2)  # 0-started average, divided by 1 - 0.9^2
        assert torch.allclose(a, expected, atol=1e-5)


def test_generator_step_uses_new_noise_and_its_own_stream_of_real_images():
    torch.manual_seed(0)
    pool = torch.randint(0, 256, (25, 1, 28, 28), dtype=torch.uint8)
    model = SSGAN(SSGANOptions(**TINY), pool[:10], torch.arange(10), unlabelled_x=pool)
    assert "unlabelled_x" not in model.state_dict()  # the training set is not saved with the model
    # the stream: random permutations of the training set, one after the other, across batches
    seen = torch.cat([model.unlabelled_batch(10) for _ in range(5)])  # 50 = two permutations
    as_index = {bytes(img.numpy()): i for i, img in enumerate(pool)}
    order = [as_index[bytes(torch.round(img * 255).to(torch.uint8).numpy())] for img in seen]
    assert sorted(order[:25]) == list(range(25)) and sorted(order[25:]) == list(range(25))
    assert order[:25] != order[25:]
    # the generator step draws new noise and its real images from that stream, not the discriminator step's batch
    calls = {"noise": 0, "real": []}
    noise, generator_loss = model.noise, model.generator_loss

    def counting_noise(n, device=None):
        calls["noise"] += 1
        return noise(n, device)

    def recording_loss(x_real, fake):
        calls["real"].append(x_real)
        return generator_loss(x_real, fake)

    model.noise, model.generator_loss = counting_noise, recording_loss
    batch = torch.rand(10, 1, 28, 28)
    cursor = model.unlabelled_cursor
    model.training_step(Batch(batch), optimizers(model))
    assert calls["noise"] == 2 and not torch.equal(calls["real"][0], batch)
    assert cursor == 25 and model.unlabelled_cursor == 10  # a new permutation, 10 images into it
    # without a training set (other callers), the discriminator step's batch is the target
    plain = small()
    plain.generator_loss = recording_loss
    plain.training_step(Batch(batch), optimizers(plain))
    assert torch.equal(calls["real"][-1], batch) and plain.unlabelled_batch(3) is None


def test_test_error_is_exact_over_the_whole_evaluation_pass():
    model = small(eval_size=25, ema=0.0)
    model.eval()
    x = torch.rand(25, 1, 28, 28)
    predicted = model.classify(x).argmax(1)
    labels = predicted.clone()
    labels[:7] = (labels[:7] + 1) % 10  # 7 wrong of 25
    results = [model.evaluation_step(Batch(x[i:i + 10], labels[i:i + 10])) for i in (0, 10, 20)]
    assert results[0] == {} and results[1] == {}
    assert results[2] == {"test_error": pytest.approx(7 / 25)}  # not the mean of per-batch errors (0.7, 0, 0)
    assert model.last_evaluation["test_images"] == 25
    model.train()
    model.eval()  # a new pass starts from zero
    assert model.evaluation_step(Batch(x[:10], labels[:10])) == {}


def test_state_survives_a_checkpoint_round_trip():
    model = small()
    opt = optimizers(model)
    for _ in range(3):
        model.training_step(Batch(torch.rand(8, 1, 28, 28)), opt)
    state = model.state_dict()
    assert state["_extra_state"] == {"num_steps": 3, "label_cursor": model.label_cursor,
                                     "unlabelled_cursor": model.unlabelled_cursor}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    other = small()
    other.load_state_dict(torch.load(buffer, weights_only=True))
    assert other.num_steps == 3 and other.label_cursor == model.label_cursor
    assert torch.equal(other.label_order, model.label_order)


def test_bad_options_are_user_errors():
    for options in ({"d_hidden": ()}, {"ema": 1.0}, {"adam_eps": 0.0}, {"num_classes": 1}):
        with pytest.raises(UserError):
            small(**options)


# ----------------------------------------------------------------------------------------------------------------
# The command


def tiny_npz(path, n_train: int = 80, n_test: int = 30, classes: int = 4):
    """Blobs whose horizontal position is the class."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:28, :28]

    def make(n):
        y = rng.integers(0, classes, n)
        cx = 6 + 5 * y + rng.normal(0, 1, n)
        cy = 14 + rng.normal(0, 2, n)
        x = 255 * np.exp(-((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2) / 10)
        return x.astype(np.uint8), y

    (xtr, ytr), (xte, yte) = make(n_train), make(n_test)
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return path


ARGS = ["--labels", "8", "--batch-size", "16", "--d-hidden", "32", "16", "--g-hidden", "16", "--z-dim", "8",
        "--n-samples", "9", "--log-every", "2", "--init-size", "40", "--device", "cpu"]


def test_ssgan_command_end_to_end_with_resume(tmp_path, capsys):
    data = tiny_npz(tmp_path / "blobs.npz")
    out = tmp_path / "runs"
    assert main(["ssgan", "--dataset", str(data), "--epochs", "1", "--seed", "2", "--out", str(out), *ARGS]) == 0
    (run,) = out.glob("ssgan-blobs-s2-*")
    assert str(run) in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    assert config["labels"] == 8 and config["d_hidden"] == [32, 16] and config["evaluate"] is True
    assert matplotlib.image.imread(run / "samples" / "epoch_0001.png").shape == (3 * 30 + 2, 3 * 30 + 2)
    ckpt = torch.load(run / "checkpoints" / "epoch_1.pt", weights_only=True)
    assert ckpt["step"] == 5 and set(ckpt["optimizers"]) == {"d", "g"}
    assert ckpt["optimizers"]["g"]["param_groups"][0]["eps"] == 1e-4  # the original's Adam, approximately
    assert ckpt["model"]["labelled_x"].shape == (8, 1, 28, 28) and ckpt["model"]["_extra_state"]["num_steps"] == 5
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_images"] == 30 and 0 <= summary["test_error"] <= 1 and "test_error_ema" in summary
    progress = (run / "progress.csv").read_text()
    assert "eval/test_error" in progress and "train/loss_lab" in progress

    # resume to 2 epochs equals a straight 2-epoch run (labelled stream, step count and schedule restored)
    assert main(["ssgan", "--resume", str(run), "--epochs", "2"]) == 0
    assert (run / "samples" / "epoch_0002.png").is_file()
    assert main(["ssgan", "--dataset", str(data), "--epochs", "2", "--seed", "2", "--out", str(tmp_path / "straight"),
                 *ARGS]) == 0
    (straight,) = (tmp_path / "straight").glob("ssgan-blobs-s2-*")
    a = torch.load(run / "checkpoints" / "epoch_2.pt", weights_only=True)["model"]
    b = torch.load(straight / "checkpoints" / "epoch_2.pt", weights_only=True)["model"]
    assert a["_extra_state"] == b["_extra_state"]
    for key in a:
        if key != "_extra_state":
            assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key
    assert json.loads((run / "summary.json").read_text())["test_error"] == \
        json.loads((straight / "summary.json").read_text())["test_error"]


def test_ssgan_command_errors(tmp_path, capsys):
    data = tiny_npz(tmp_path / "blobs.npz")
    np.savez(tmp_path / "no_test.npz", x=np.zeros((40, 28, 28), np.uint8), y=np.arange(40) % 4)
    np.savez(tmp_path / "no_labels.npz", x=np.zeros((40, 28, 28), np.uint8))
    cases = [
        (["--dataset", str(data), "--labels", "10"], "multiple of the number of classes"),
        (["--dataset", str(tmp_path / "no_test.npz"), "--labels", "8"], "--no-evaluate"),
        (["--dataset", str(tmp_path / "no_labels.npz"), "--no-evaluate"], "labelled training data"),
        (["--dataset", str(data), "--ema", "2"], "--ema"),
    ]
    for argv, word in cases:
        try:
            code = main(["ssgan", *argv, "--out", str(tmp_path / "runs"), "--device", "cpu"])
        except SystemExit as exc:
            code = exc.code
        err = capsys.readouterr().err
        assert code == 2 and word in err and "Traceback" not in err, err
    # without the test split, --no-evaluate trains anyway
    assert main(["ssgan", "--dataset", str(tmp_path / "no_test.npz"), "--no-evaluate", "--epochs", "1",
                 "--out", str(tmp_path / "runs"), *ARGS]) == 0
