"""InfoGAN: the latent codes, the mutual-information lower bound and how it enters both players' losses, Q
recovering the codes it was given after a short training on tiny data, the unsupervised accuracy on a test set,
latent-traversal grids, and the ``infogan`` command end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rlgen.cli import main
from rlgen.common.errors import UserError
from rlgen.vision.datasets import Batch
from rlgen.vision.gan.infogan import (
    REAL_AFFINE,
    InfoGAN,
    InfoGANOptions,
    Latent,
    batch_statistics,
    clustering_information,
    consistency,
    information_terms,
    random_affine,
    warp,
)
from rlgen.vision.trainer import Optimizers
from tests.cli_helpers import fails_cleanly

torch.set_num_threads(1)
CPU = torch.device("cpu")
TINY = {"noise_dim": 4, "ngf": 8, "ndf": 8, "fc_dim": 32, "q_dim": 16}


def small(eval_size: int | None = None, **options) -> InfoGAN:
    torch.manual_seed(0)
    return InfoGAN(InfoGANOptions(**{**TINY, **options}), eval_size)


def optimizers(model: InfoGAN) -> Optimizers:
    groups = model.optimizer_groups()
    return Optimizers({"d": torch.optim.Adam(list(groups["d"]), 2e-4, betas=(0.5, 0.999)),
                       "g": torch.optim.Adam(list(groups["g"]["params"]), groups["g"]["lr"], betas=(0.5, 0.999))},
                      CPU)


def blobs(n: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    c = rng.uniform(8, 20, (n, 2))
    x = np.exp(-((yy - c[:, :1, None]) ** 2 + (xx - c[:, 1:, None]) ** 2) / 20)
    return torch.from_numpy(x[:, None].astype(np.float32))


# ----------------------------------------------------------------------------------------------------------------
# Architecture and latents


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_networks_and_latent_layout(shape):
    model = small(image_shape=shape, categorical=(10, 3), continuous=2)
    latent = model.latent(6)
    assert latent.noise.shape == (6, 4) and latent.categorical.shape == (6, 2) and latent.continuous.shape == (6, 2)
    assert latent.noise.abs().max() <= 1 and latent.continuous.abs().max() <= 1
    z = latent.vector()
    assert z.shape == (6, 4 + 10 + 3 + 2)
    assert torch.equal(z[:, 4:14].argmax(1), latent.categorical[:, 0]) and torch.equal(z[:, 14:17].sum(1), torch.ones(6))
    images = model.generate(latent)
    assert images.shape == (6, *shape) and 0 <= images.min() and images.max() <= 1
    logits, q = model.discriminator(images)
    assert logits.shape == (6,) and q.shape == (6, 10 + 3 + 2)
    assert small(image_shape=shape, learn_std=True).discriminator(images)[1].shape == (6, 10 + 2 * 2)


def test_the_papers_mnist_architecture():
    model = InfoGAN(InfoGANOptions())
    d, g = model.discriminator, model.generator
    convs = [m for m in d.body if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(64, (4, 4), (2, 2)), (128, (4, 4), (2, 2))]
    assert d.body[-3].out_features == 1024 and d.q_head[0].out_features == 128 and d.q_head[-1].out_features == 12
    assert g.fc[0].in_features == 74 and g.fc[0].out_features == 1024 and g.fc[3].out_features == 7 * 7 * 128
    assert [(m.in_channels, m.out_channels) for m in g.deconv if isinstance(m, torch.nn.ConvTranspose2d)] == \
        [(128, 64), (64, 1)]
    assert model.optimizer_groups()["g"]["lr"] == 1e-3


def test_bad_options_are_user_errors():
    for options in ({"image_shape": (1, 64, 64)}, {"categorical": (1,)}, {"categorical": (), "continuous": 0},
                    {"ngf": 0}):
        with pytest.raises(UserError):
            small(**options)


# ----------------------------------------------------------------------------------------------------------------
# The mutual-information term


def test_information_terms_are_the_lower_bound_of_the_paper():
    o = InfoGANOptions(categorical=(4,), continuous=2)
    latent = Latent(torch.zeros(3, 0), torch.tensor([[0], [2], [3]]), torch.tensor([[0.5, -0.5], [0.0, 1.0],
                                                                                      [-1.0, 0.2]]), (4,))
    q = torch.randn(3, 4 + 2)
    terms = information_terms(q, latent, o)
    log_q = F.log_softmax(q[:, :4], 1)[torch.arange(3), latent.categorical[:, 0]]
    assert terms["mi_cat"].item() == pytest.approx(math.log(4) + log_q.mean().item(), abs=1e-6)
    # fixed std 1: -log N(c; mu, 1) per code, summed over codes; H(U(-1, 1)) = log 2 per code
    nll = 0.5 * math.log(2 * math.pi) + 0.5 * (latent.continuous - q[:, 4:]).square()
    assert terms["ce_cont"].item() == pytest.approx(nll.sum(1).mean().item(), abs=1e-6)
    assert terms["mi_cont"].item() == pytest.approx(2 * math.log(2) - nll.sum(1).mean().item(), abs=1e-6)
    # a perfect categorical posterior reaches H(c) = log K
    perfect = torch.full((3, 6), -1e4)
    perfect[torch.arange(3), latent.categorical[:, 0]] = 0.0
    assert information_terms(perfect, latent, o)["mi_cat"].item() == pytest.approx(math.log(4), abs=1e-5)
    # a learnt std: log-variance outputs after the means (std = sqrt(exp(s)), as in the original)
    o_std = InfoGANOptions(categorical=(4,), continuous=2, learn_std=True)
    q_std = torch.randn(3, 4 + 4)
    mean, log_var = q_std[:, 4:6], q_std[:, 6:]
    expected = (0.5 * math.log(2 * math.pi) + 0.5 * log_var
                + 0.5 * (latent.continuous - mean).square() / log_var.exp()).sum(1).mean()
    assert information_terms(q_std, latent, o_std)["ce_cont"].item() == pytest.approx(expected.item(), abs=1e-5)


def test_both_players_subtract_lambda_times_the_information_term():
    model = small(info_weight=0.7, info_weight_continuous=0.3)
    real, latent = torch.rand(8, 1, 28, 28), model.latent(8)
    fake = model.generate(latent)
    torch.manual_seed(1)
    d_loss, metrics = model.discriminator_loss(real, fake, latent)
    logits_real, _ = model.discriminator(real)
    logits_fake, q = model.discriminator(fake)
    terms = information_terms(q, latent, model.options)
    gan = (F.binary_cross_entropy_with_logits(logits_real, torch.ones(8))
           + F.binary_cross_entropy_with_logits(logits_fake, torch.zeros(8)))
    # train-mode batch norm is deterministic for a fixed batch, so the recomputation matches
    assert d_loss.item() == pytest.approx((gan - 0.7 * terms["mi_cat"] - 0.3 * terms["mi_cont"]).item(), abs=1e-5)
    assert metrics["d_gan_loss"].item() == pytest.approx(gan.item(), abs=1e-5)
    g_loss, _ = model.generator_loss(fake, latent)
    expected_g = F.binary_cross_entropy_with_logits(logits_fake, torch.ones(8)) - 0.7 * terms["mi_cat"] \
        - 0.3 * terms["mi_cont"]
    assert g_loss.item() == pytest.approx(expected_g.item(), abs=1e-5)
    # with lambda = 0 it is a plain GAN
    plain = small(info_weight=0.0, info_weight_continuous=0.0)
    plain.load_state_dict(model.state_dict())
    assert plain.discriminator_loss(real, fake, latent)[0].item() == pytest.approx(gan.item(), abs=1e-5)


def test_clustering_information_is_the_codes_information_about_the_batch():
    """log K for confident predictions that use the K values equally; 0 when every image gets the same prediction
    (confident or not); in between for a code that merges two values."""
    k = 4
    confident = torch.eye(k).repeat(3, 1) * 30.0  # 12 images, each value 3 times, certain
    assert clustering_information(confident).item() == pytest.approx(math.log(k), abs=1e-4)
    assert clustering_information(torch.zeros(12, k)).item() == pytest.approx(0.0, abs=1e-6)
    assert clustering_information(confident[:1].repeat(12, 1)).item() == pytest.approx(0.0, abs=1e-4)
    merged = confident.clone()
    merged[:, 1] = merged[:, 0]  # values 0 and 1 equally likely for half the images
    assert 0 < clustering_information(merged).item() < math.log(k) - 0.1


def test_real_clustering_adds_the_weighted_information_on_real_images_to_the_discriminators_loss():
    """The discriminator's loss falls by ``real_clustering`` times the information Q's first code carries about
    the real batch (the metric is logged either way); 0 is the paper's loss."""
    model = small(real_clustering=0.5)
    plain = small()
    plain.load_state_dict(model.state_dict())
    real, latent = torch.rand(8, 1, 28, 28), model.latent(8)
    fake = model.generate(latent).detach()
    loss, metrics = model.discriminator_loss(real, fake, latent)
    plain_loss, plain_metrics = plain.discriminator_loss(real, fake, latent)
    _, q_real = model.discriminator(real)
    expected = clustering_information(q_real[:, :10])
    assert metrics["mi_real"].item() == pytest.approx(expected.item(), abs=1e-5)
    assert plain_metrics["mi_real"].item() == pytest.approx(expected.item(), abs=1e-5)
    assert loss.item() == pytest.approx(plain_loss.item() - 0.5 * expected.item(), abs=1e-5)


def test_random_affine_maps_stay_within_their_bounds_and_warp_moves_whole_pixels_exactly():
    theta = random_affine(2000, (28, 28), degrees=15.0, scale=0.1, shift=2.0)
    linear = theta[:, :, :2]
    zoom = 1 / linear[:, 0].norm(dim=1)  # rows of a rotation divided by the zoom
    angle = torch.rad2deg(torch.atan2(linear[:, 1, 0], linear[:, 0, 0]))
    assert zoom.min() >= 0.9 - 1e-6 and zoom.max() <= 1.1 + 1e-6 and zoom.std() > 0.04
    assert angle.abs().max() <= 15 + 1e-4 and angle.std() > 7
    assert (theta[:, :, 2].abs() * 14).max() <= 2 + 1e-5  # 2 pixels of 28 are 2/14 of [-1, 1]
    x = torch.zeros(2, 1, 28, 28)
    x[:, :, 10, 12] = 1.0
    identity = torch.tensor([[1.0, 0, 0], [0, 1, 0]]).expand(2, 2, 3)
    torch.testing.assert_close(warp(x, identity), x)
    moved = warp(x, identity + torch.tensor([[0, 0, -2 / 14], [0, 0, 0]]))  # read 2 pixels to the left: move right
    assert moved[0, 0, 10, 14] == pytest.approx(1.0, abs=1e-5) and moved.sum().item() == pytest.approx(2.0, abs=1e-4)
    rotated = warp(x, random_affine(2, (28, 28), degrees=15.0, scale=0.1, shift=2.0))
    assert rotated.min() >= 0 and rotated.sum().item() == pytest.approx(2.0, rel=0.25)  # zoom changes the mass


def test_random_shear_slants_vertical_strokes_and_keeps_horizontal_ones():
    theta = random_affine(2000, (28, 28), degrees=0.0, scale=0.0, shift=0.0, shear=0.3)
    slant = theta[:, 0, 1]
    assert slant.abs().max() <= 0.3 + 1e-6 and slant.std() > 0.15
    torch.testing.assert_close(theta[:, :, [0, 2]], torch.tensor([[1.0, 0], [0, 0]]).expand(2000, 2, 2))
    torch.testing.assert_close(theta[:, 1, 1], torch.ones(2000))
    x = torch.zeros(1, 1, 28, 28)
    x[:, :, 4:24, 13:15] = 1.0  # a vertical bar
    x[:, :, 13:15, 4:24] = 1.0  # and a horizontal one
    slanted = warp(x, torch.tensor([[[1.0, 0.25, 0], [0, 1, 0]]]))
    assert slanted[0, 0, 13:15, 4:24].sum().item() == pytest.approx(40.0, rel=0.05)  # the horizontal bar stays
    top, bottom = slanted[0, 0, 5].argmax(), slanted[0, 0, 22].argmax()  # the vertical bar leans
    assert abs(int(top) - int(bottom)) >= 3


def test_consistency_is_the_kl_divergence_to_the_unmoved_prediction():
    logits = torch.randn(6, 10)
    assert consistency(logits, logits).item() == pytest.approx(0.0, abs=1e-6)
    moved = torch.randn(6, 10, requires_grad=True)
    target = logits.requires_grad_()
    kl = consistency(target, moved)
    expected = F.kl_div(F.log_softmax(moved, 1), F.log_softmax(logits, 1), log_target=True, reduction="batchmean")
    assert kl.item() == pytest.approx(expected.item(), rel=1e-5) and kl.item() > 0
    kl.backward()
    assert target.grad is None and moved.grad.abs().sum() > 0  # the unmoved prediction is the target


def test_real_consistency_adds_the_weighted_kl_on_shifted_real_images_and_draws_nothing_when_off():
    model = small(real_consistency=2.0)
    plain = small()
    plain.load_state_dict(model.state_dict())
    real, latent = torch.rand(8, 1, 28, 28), model.latent(8)
    fake = model.generate(latent).detach()
    state = torch.get_rng_state()
    plain_loss, plain_metrics = plain.discriminator_loss(real, fake, latent)
    assert torch.equal(torch.get_rng_state(), state) and "consistency_real" not in plain_metrics
    torch.manual_seed(5)
    loss, metrics = model.discriminator_loss(real, fake, latent)
    torch.manual_seed(5)
    _, q_real = model.discriminator(real)
    _, q_moved = model.discriminator(warp(real, random_affine(8, (28, 28), **REAL_AFFINE)))
    expected = consistency(q_real[:, :10], q_moved[:, :10])
    assert metrics["consistency_real"].item() == pytest.approx(expected.item(), abs=1e-5)
    assert loss.item() == pytest.approx(plain_loss.item() + 2.0 * expected.item(), abs=1e-4)
    with pytest.raises(UserError, match="categorical"):
        small(real_consistency=1.0, categorical=(), continuous=2)


def test_q_head_recovers_the_codes_after_a_short_training():
    model = small(categorical=(5,), continuous=1)
    opt = optimizers(model)
    data = blobs(256)
    model.eval()
    before = model.recover_codes(1000)
    model.train()
    mi = []
    g = torch.Generator().manual_seed(0)
    for step in range(150):
        metrics = model.training_step(Batch(data[torch.randint(0, 256, (32,), generator=g)]), opt)
        mi.append(metrics["mi_cat"].item())
    model.eval()
    after = model.recover_codes(1000)
    # the information term rises (the cross-entropy of Q falls)...
    assert np.mean(mi[-20:]) > np.mean(mi[:10]) + 0.25, (mi[:10], mi[-20:])
    # ...and Q reads the codes off fresh samples far better than chance (1/5 and MSE 1/3)
    assert before["code_accuracy"] < 0.4 and after["code_accuracy"] > 0.9, (before, after)
    assert after["continuous_mse"] < 0.6 * before["continuous_mse"] and after["continuous_mse"] < 0.2, (before, after)


def test_batch_statistics_leave_the_running_statistics_alone():
    model = small()
    bn = model.discriminator.body[3]
    x = torch.rand(16, 1, 28, 28)
    model.discriminator(x)  # one training-mode pass moves the running mean
    state = {k: v.clone() for k, v in model.discriminator.state_dict().items()}
    model.eval()
    with batch_statistics(model.discriminator):
        assert bn.training
        with_batch = model.discriminator(x)[0]
    assert not bn.training and bn.momentum == 0.1
    for k, v in model.discriminator.state_dict().items():
        assert torch.equal(v, state[k]), k
    model.train()
    assert torch.allclose(model.discriminator(x)[0], with_batch, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# Evaluation and pictures


def test_unsupervised_accuracy_over_an_evaluation_pass():
    model = small(eval_size=30, categorical=(3,))
    model.eval()
    x = torch.rand(30, 1, 28, 28)
    with torch.no_grad():
        codes = model.code_predictions(model.q_network(x)[1])[0][:, 0]
    labels = (codes + 1) % 3  # a relabelling of the codes: accuracy 1 after matching
    labels[:3] = (labels[:3] + 1) % 3  # ...except 3 examples
    with torch.no_grad():
        results = [model.evaluation_step(Batch(x[i:i + 10], labels[i:i + 10])) for i in (0, 10, 20)]
    assert "unsupervised_accuracy" not in results[0] and "unsupervised_accuracy" not in results[1]
    # q_network normalises each batch with its own statistics: recompute the codes batch by batch
    with torch.no_grad():
        per_batch = torch.cat([model.code_predictions(model.q_network(x[i:i + 10])[1])[0][:, 0] for i in (0, 10, 20)])
    from rlgen.vision.metrics import unsupervised_accuracy

    expected = unsupervised_accuracy(per_batch, labels, 3, 3)[0]
    assert results[2]["unsupervised_accuracy"] == pytest.approx(expected)
    assert results[2]["categorical_error"] == pytest.approx(1 - expected)
    assert {"code_accuracy", "continuous_mse"} <= set(results[0])
    assert model.last_evaluation["test_images"] == 30
    counts = np.array(model.last_evaluation["code_label_counts"])  # code usage: images per code value and label
    assert counts.sum() == 30 and counts.shape == (3, 3)
    assert sorted(model.last_evaluation["code_to_label"]) == [0, 1, 2]


def test_samples_and_traversals_vary_one_code_along_each_row(tmp_path):
    model = small(categorical=(4,), continuous=2)
    model.eval()
    seen = {}

    def spy(latent: Latent) -> torch.Tensor:
        seen["latent"] = latent
        return torch.zeros(len(latent.noise), 1, 28, 28)

    model.generate = spy  # record the latents that the grids are drawn from
    model.sample(16)  # 4 x 4 grid: column j has category j % 4, each row one draw
    lat = seen["latent"]
    assert lat.categorical[:, 0].tolist() == [0, 1, 2, 3] * 4
    assert torch.equal(lat.noise[0], lat.noise[3]) and not torch.equal(lat.noise[0], lat.noise[4])
    images, cols = model.traversal("continuous", 1, rows=3, steps=5, span=2.0)
    lat = seen["latent"]
    assert cols == 5 and images.shape == (15, 1, 28, 28)
    assert torch.allclose(lat.continuous[:5, 1], torch.linspace(-2, 2, 5))
    assert torch.equal(lat.continuous[:5, 0], lat.continuous[0, 0].repeat(5))  # the other code stays fixed
    assert lat.categorical[:, 0].tolist() == [0] * 5 + [1] * 5 + [2] * 5
    with pytest.raises(ValueError):
        model.traversal("continuous", 2)
    del model.generate
    paths = model.save_traversals(tmp_path, rows=3)
    assert [p.name for p in paths] == ["traversal_categorical_0.png", "traversal_continuous_0.png",
                                       "traversal_continuous_1.png"]
    assert matplotlib.image.imread(paths[0]).shape == (3 * 30 + 2, 4 * 30 + 2)
    assert matplotlib.image.imread(paths[1]).shape == (3 * 30 + 2, 10 * 30 + 2)


# ----------------------------------------------------------------------------------------------------------------
# The command


ARGS = ["--batch-size", "16", "--ngf", "8", "--ndf", "8", "--fc-dim", "32", "--q-dim", "16", "--noise-dim", "4",
        "--categorical", "4", "--continuous", "1", "--n-samples", "16", "--log-every", "2", "--device", "cpu"]


def test_infogan_command_end_to_end_with_resume(tmp_path, capsys):
    from tests.test_ssgan import tiny_npz

    data = tiny_npz(tmp_path / "blobs.npz", n_train=64, n_test=20)
    out = tmp_path / "runs"
    assert main(["infogan", "--dataset", str(data), "--epochs", "1", "--out", str(out), *ARGS]) == 0
    (run,) = out.glob("infogan-blobs-s0-*")
    assert str(run) in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    assert config["categorical"] == [4] and config["continuous"] == 1 and config["g_lr"] == 1e-3
    # the default preset (rlgen) chooses among 3 starts after 2 epochs: a 1-epoch run is one start of it
    assert (config["preset"], config["restarts"], config["real_clustering"]) == ("rlgen", 1, 1.0)
    assert matplotlib.image.imread(run / "samples" / "epoch_0001.png").shape == (4 * 30 + 2, 4 * 30 + 2)
    traversal = matplotlib.image.imread(run / "samples" / "traversal_categorical_0.png")
    assert traversal.shape == (10 * 30 + 2, 4 * 30 + 2)  # 10 draws x 4 categories
    assert (run / "samples" / "traversal_continuous_0.png").is_file()
    ckpt = torch.load(run / "checkpoints" / "epoch_1.pt", weights_only=True)
    assert ckpt["step"] == 4 and set(ckpt["optimizers"]) == {"d", "g"}
    assert ckpt["optimizers"]["g"]["param_groups"][0]["lr"] == 1e-3
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_images"] == 20 and 0 <= summary["categorical_error"] <= 1
    assert summary["traversals"] == ["traversal_categorical_0.png", "traversal_continuous_0.png"]
    assert "eval/unsupervised_accuracy" in (run / "progress.csv").read_text()

    assert main(["infogan", "--resume", str(run), "--epochs", "2"]) == 0
    assert "resuming" in capsys.readouterr().err
    assert torch.load(run / "checkpoints" / "epoch_2.pt", weights_only=True)["step"] == 8
    assert (run / "samples" / "epoch_0002.png").is_file()


def test_infogan_without_a_categorical_code_or_test_split(tmp_path):
    np.savez(tmp_path / "plain.npz", x=np.random.default_rng(0).integers(0, 256, (32, 28, 28), dtype=np.uint8))
    at = ARGS.index("--categorical")
    args = ARGS[:at] + ARGS[at + 2:] + ["--categorical"]  # no value: no categorical code
    assert main(["infogan", "--dataset", str(tmp_path / "plain.npz"), "--no-evaluate", "--epochs", "1",
                 "--preset", "paper",
                 "--out", str(tmp_path / "runs"), *args]) == 0
    (run,) = (tmp_path / "runs").glob("infogan-plain-*")
    assert json.loads((run / "config.json").read_text())["categorical"] == []
    assert json.loads((run / "summary.json").read_text())["traversals"] == ["traversal_continuous_0.png"]


def test_best_of_several_starts_keeps_the_lowest_unsupervised_loss_and_goes_on_where_it_stopped(tmp_path, capsys):
    from rlgen.vision.restarts import last_epoch_metrics
    from tests.test_ssgan import tiny_npz

    data = tiny_npz(tmp_path / "blobs.npz", n_train=64, n_test=20)
    out = tmp_path / "runs"
    argv = ["infogan", "--dataset", str(data), "--epochs", "2", "--out", str(out), "--restarts", "2",
            "--select-after", "1", "--real-clustering", "1", "--real-consistency", "1", *ARGS]
    assert main(argv) == 0
    (base,) = out.glob("infogan-blobs-s0-best-of-2")
    selection = json.loads((base / "selection.json").read_text())
    assert [c["seed"] for c in selection["candidates"]] == [0, 1000]
    runs = [Path(c["run"]) for c in selection["candidates"]]
    assert all(run.is_absolute() for run in runs)
    assert [r.parent.name for r in runs] == ["candidate-0", "candidate-1"]
    scores = []
    for run in runs:  # the score: the real-image part of the discriminator's loss over the choice's epoch
        metrics = last_epoch_metrics(run, 1)
        scores.append(metrics["consistency_real"] - metrics["mi_real"])
    assert [c["score"] for c in selection["candidates"]] == pytest.approx(scores, abs=1e-5)
    kept = int(np.argmin(scores))
    assert selection["kept"] == kept
    epochs = [json.loads((run / "summary.json").read_text())["epochs"] for run in runs]
    assert epochs[kept] == 2 and epochs[1 - kept] == 1  # only the kept start trains on
    assert json.loads((runs[kept] / "selection.json").read_text()) == selection
    assert json.loads((runs[kept] / "config.json").read_text())["max_minutes"] is None

    # The same command again trains nothing: every start and the kept run are done
    logs = {run: (run / "progress.csv").read_text() for run in runs}
    assert main(argv) == 0
    assert sorted(p.name for p in base.iterdir()) == ["candidate-0", "candidate-1", "options.json", "selection.json"]
    assert {run: (run / "progress.csv").read_text() for run in runs} == logs
    # Other options are another experiment: refused, nothing trained
    fails_cleanly(capsys, [*argv, "--lr", "1e-3"], "began with other options", "lr")
    assert {run: (run / "progress.csv").read_text() for run in runs} == logs
    # The kept run is an ordinary run from here on
    assert main(["infogan", "--resume", str(runs[kept]), "--epochs", "3"]) == 0
    assert json.loads((runs[kept] / "summary.json").read_text())["epochs"] == 3


def test_best_of_several_starts_needs_a_score_to_choose_by(tmp_path, capsys):
    from tests.cli_helpers import fails_cleanly
    from tests.test_ssgan import tiny_npz

    data = tiny_npz(tmp_path / "blobs.npz", n_train=64, n_test=20)
    fails_cleanly(capsys, ["infogan", "--dataset", str(data), "--epochs", "3", "--out", str(tmp_path / "runs"),
                           "--preset", "paper", "--restarts", "2", *ARGS], "--real-consistency")
    assert not (tmp_path / "runs").exists()


def test_an_epochs_training_metrics_are_its_windows_only(tmp_path):
    from rlgen.vision.restarts import last_epoch_metrics

    # windows of 2 steps, 4 steps an epoch; the run went on past epoch 2 (the kept start), which must not count
    rows = [(2, 1.0, ""), (4, 3.0, 1), (6, 5.0, ""), (8, 7.0, 2), (10, 100.0, ""), (12, 100.0, 3)]
    (tmp_path / "progress.csv").write_text("step,train/x,time/epoch\n" + "".join(f"{s},{x},{e}\n" for s, x, e in rows))
    assert last_epoch_metrics(tmp_path, 1) == {"x": 2.0}
    assert last_epoch_metrics(tmp_path, 2) == {"x": 6.0}
    with pytest.raises(UserError, match="epoch 4"):
        last_epoch_metrics(tmp_path, 4)


def test_presets_name_the_papers_recipe_and_rlgens(tmp_path):
    from rlgen.vision import config

    paper = config.resolve("infogan", {"dataset": "mnist", "preset": "paper"})
    assert paper["preset"] == "paper" and paper["real_clustering"] == paper["real_consistency"] == 0
    assert paper["restarts"] == 1
    rlgen = config.resolve("infogan", {"dataset": "mnist"})  # the default
    assert (rlgen["real_clustering"], rlgen["real_consistency"], rlgen["restarts"], rlgen["select_after"]) == (1, 1, 3, 2)
    assert config.resolve("infogan", {"dataset": "mnist", "preset": "rlgen", "restarts": 5})["restarts"] == 5  # flags win
    (tmp_path / "opts.yaml").write_text("preset: paper\nselect_after: 3\n")
    from_file = config.resolve("infogan", {"dataset": "mnist", "config": str(tmp_path / "opts.yaml")})
    assert from_file["preset"] == "paper" and from_file["select_after"] == 3 and from_file["restarts"] == 1
    with pytest.raises(SystemExit):
        main(["infogan", "--dataset", "mnist", "--preset", "nonsense"])


def test_an_interrupted_best_of_says_to_run_the_same_command_and_that_goes_on(tmp_path, capsys, monkeypatch):
    import rlgen.vision.train as vision_train
    from tests.test_ssgan import tiny_npz

    data = tiny_npz(tmp_path / "blobs.npz", n_train=64, n_test=20)
    out = tmp_path / "runs"
    argv = ["infogan", "--dataset", str(data), "--epochs", "2", "--out", str(out), "--preset", "rlgen",
            "--select-after", "1", "--restarts", "2", *ARGS]
    real_train, calls = vision_train.train, []

    def stopped_at_the_second_start(cfg, resume=None):
        calls.append(cfg["seed"])
        if len(calls) == 3:  # the top-level call, the first start, then the second: stopped as by Ctrl-C
            raise KeyboardInterrupt
        return real_train(cfg, resume)

    monkeypatch.setattr(vision_train, "train", stopped_at_the_second_start)
    assert main(argv) == 130
    assert "interrupted; run the same command again to go on" in capsys.readouterr().err
    monkeypatch.setattr(vision_train, "train", real_train)
    base = out / "infogan-blobs-s0-best-of-2"
    (first,) = (base / "candidate-0").iterdir()
    log = (first / "progress.csv").read_text()
    assert main(argv) == 0
    assert list((base / "candidate-0").iterdir()) == [first]  # the first start was reused, not trained again
    assert (first / "progress.csv").read_text() == log
    assert json.loads((base / "selection.json").read_text())["kept"] in (0, 1)


def test_best_of_with_missing_data_is_one_clear_error_and_leaves_nothing(tmp_path, capsys):
    fails_cleanly(capsys, ["infogan", "--dataset", str(tmp_path / "missing.npz"), "--epochs", "3", "--out",
                           str(tmp_path / "runs"), "--preset", "rlgen", *ARGS], "missing.npz")
    assert not (tmp_path / "runs").exists()
