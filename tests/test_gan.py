"""DCGAN and the Improved-GAN techniques: each technique changes the losses as specified, the discriminator learns,
and the whole game runs for 28x28 and 32x32 images with 1 or 3 channels."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rlgen.common.errors import UserError
from rlgen.vision.datasets import Batch
from rlgen.vision.gan import DCGAN, GANOptions
from rlgen.vision.gan.feature_matching import feature_matching_loss
from rlgen.vision.gan.historical_averaging import HistoricalAverage
from rlgen.vision.gan.labels import discriminator_targets
from rlgen.vision.gan.minibatch_discrimination import MinibatchDiscrimination
from rlgen.vision.gan.minibatch_std import MinibatchStdDev
from rlgen.vision.gan.unrolled import call_with, unrolled_parameters
from rlgen.vision.gan.virtual_batch_norm import VirtualBatchNorm
from rlgen.vision.trainer import Optimizers

torch.set_num_threads(1)
CPU = torch.device("cpu")


def small(shape=(1, 28, 28), **options) -> DCGAN:
    torch.manual_seed(0)
    return DCGAN(GANOptions(image_shape=shape, z_dim=8, ngf=8, ndf=8, **options))


def optimizers(model: DCGAN, lr: float = 2e-4) -> Optimizers:
    return Optimizers({k: torch.optim.Adam(list(v), lr, betas=(0.5, 0.999))
                       for k, v in model.optimizer_groups().items()}, CPU)


def batch_pair(model: DCGAN, n: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    real = torch.rand(n, *model.options.image_shape, generator=g) * 2 - 1
    with torch.no_grad():
        fake = model.generator(torch.randn(n, model.options.z_dim, generator=g))
    return real, fake


# ----------------------------------------------------------------------------------------------------------------
# DCGAN


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 28, 28), (1, 32, 32), (3, 32, 32)])
def test_networks_for_each_image_size(shape):
    model = small(shape)
    fake = model.generator(torch.randn(5, 8))
    assert fake.shape == (5, *shape) and fake.min() >= -1 and fake.max() <= 1
    logits, features = model.discriminator(fake, with_features=True)
    assert logits.shape == (5,) and features.shape[0] == 5
    samples = model.sample(3)
    assert samples.shape == (3, *shape) and 0 <= samples.min() and samples.max() <= 1


@pytest.mark.parametrize("shape", [(1, 64, 64), (2, 28, 28), (3, 28, 32)])
def test_unsupported_image_shapes_are_user_errors(shape):
    with pytest.raises(UserError, match="28x28 or 32x32"):
        DCGAN(GANOptions(image_shape=shape))


@pytest.mark.parametrize("options", [{}, {"minibatch_discrimination": 10, "minibatch_std": True,
                                          "label_smoothing": 0.1}])
def test_discriminator_steps_lower_its_loss_on_a_fixed_batch(options):
    model = small(**options)
    real, fake = batch_pair(model)
    targets = model.targets(len(real), len(fake), CPU)
    opt = optimizers(model, lr=1e-3)
    losses = []
    for _ in range(10):
        loss = model.discriminator_loss(real, fake, targets)[0]
        losses.append(loss.item())
        opt.step("d", loss)
    losses.append(model.discriminator_loss(real, fake, targets)[0].item())
    assert losses[-1] < 0.5 * losses[0], losses
    assert sum(b < a for a, b in itertools.pairwise(losses)) >= 8, losses  # (nearly) every step lowers it


def test_generator_loss_is_non_saturating_by_default():
    model = small()
    real, fake = batch_pair(model)
    expected = -F.logsigmoid(model.discriminator(fake)).mean()
    assert torch.allclose(model.generator_loss(real, fake), expected, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# Feature matching


def test_feature_matching_replaces_the_generator_loss():
    model = small(feature_matching=True)
    real, fake = batch_pair(model)
    _, f_real = model.discriminator(real, with_features=True)
    _, f_fake = model.discriminator(fake, with_features=True)
    expected = (f_real.mean(0) - f_fake.mean(0)).square().mean()  # the original: T.mean(T.square(mom_gen - mom_real))
    loss = model.generator_loss(real, fake)
    assert torch.allclose(loss, expected, atol=1e-6)
    standard = -F.logsigmoid(model.discriminator(fake)).mean()
    assert not torch.allclose(loss, standard)
    assert model.generator_loss(real, real).item() == pytest.approx(0.0, abs=1e-10)
    # Real features are constants: only the fake side carries gradient.
    r = f_real.detach().requires_grad_(True)
    feature_matching_loss(r, f_fake).backward()
    assert r.grad is None


# ----------------------------------------------------------------------------------------------------------------
# Minibatch discrimination


def test_minibatch_discrimination_matches_the_definition():
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(6, num_kernels=4, kernel_dim=3)
    with torch.no_grad():
        layer.log_weight_scale.normal_(0, 0.3)  # non-trivial weight-norm scales
    x = torch.randn(5, 6)
    w = layer.theta * (layer.log_weight_scale.exp() / layer.theta.square().sum(0).sqrt())[None]
    m = torch.einsum("na,abc->nbc", x, w)
    expected = torch.zeros(5, 4)
    for i in range(5):  # the definition, one pair at a time
        for j in range(5):
            if i != j:
                expected[i] += torch.exp(-(m[i] - m[j]).abs().sum(-1))
    out = layer(x)
    assert out.shape == (5, 10)
    assert torch.equal(out[:, :6], x)
    assert torch.allclose(out[:, 6:], expected - 1.0, atol=1e-6)  # bias initialised to -1 as in the original
    # Identical examples are maximally close to every other one: o = N - 1 per kernel.
    same = layer(x[:1].repeat(5, 1))
    assert torch.allclose(same[:, 6:], torch.full((5, 4), 5 - 1 - 1.0), atol=1e-6)


def test_minibatch_discrimination_makes_the_discriminator_see_the_batch():
    x = torch.rand(6, 1, 28, 28) * 2 - 1
    x2 = x.clone()
    x2[5] = -x2[5]
    for kernels, depends in ((0, False), (10, True)):
        d = small(minibatch_discrimination=kernels).discriminator.eval()  # eval: batch norm is per example
        with torch.no_grad():
            changed = not torch.allclose(d(x)[0], d(x2)[0])
        assert changed == depends
    assert small(minibatch_discrimination=10).discriminator.head.in_features == 4 * 8 * 9 + 10  # features + kernels


# ----------------------------------------------------------------------------------------------------------------
# Historical averaging


def test_historical_average_penalty_and_update():
    lin = nn.Linear(3, 2)
    history = HistoricalAverage(lin.parameters())
    assert history.penalty().item() == 0.0
    snapshots = [torch.cat([p.detach().flatten() for p in lin.parameters()])]
    for shift in (1.0, -0.5, 2.0):
        with torch.no_grad():
            for p in lin.parameters():
                p.add_(shift)
        now = torch.cat([p.detach().flatten() for p in lin.parameters()])
        mean = torch.stack(snapshots).mean(0)
        assert history.penalty().item() == pytest.approx((now - mean).square().sum().item(), rel=1e-5)
        history.update()
        snapshots.append(now)
    assert int(history.count) == 4
    assert torch.allclose(torch.cat([getattr(history, f"mean_{i}").flatten() for i in range(2)]),
                          torch.stack(snapshots).mean(0), atol=1e-6)


def test_historical_averaging_adds_the_weighted_penalty_to_the_losses():
    with_ha = small(historical_averaging=0.5)
    with torch.no_grad():  # pretend the discriminator has moved away from its past mean
        for name, buf in with_ha.d_history.named_buffers():
            if name.startswith("mean_"):
                buf.sub_(0.01)
    penalty = with_ha.d_history.penalty().item()
    assert penalty > 0
    plain = small()
    plain.load_state_dict({k: v for k, v in with_ha.state_dict().items() if "history" not in k})
    batch = Batch(torch.rand(8, 1, 28, 28))
    torch.manual_seed(5)
    d_ha = with_ha.training_step(batch, optimizers(with_ha))["d_loss"].item()
    torch.manual_seed(5)
    d_plain = plain.training_step(batch, optimizers(plain))["d_loss"].item()
    assert d_ha - d_plain == pytest.approx(0.5 * penalty, rel=1e-4)
    assert int(with_ha.d_history.count) == 2 and int(with_ha.g_history.count) == 2
    assert "d_history.count" in with_ha.state_dict()  # checkpointed with the model


# ----------------------------------------------------------------------------------------------------------------
# One-sided label smoothing and label noise


def test_one_sided_label_smoothing_changes_only_the_real_targets():
    t_real, t_fake = discriminator_targets(4, 3, smoothing=0.1)
    assert torch.allclose(t_real, torch.full((4,), 0.9)) and torch.equal(t_fake, torch.zeros(3))
    model = small(label_smoothing=0.1)
    real, fake = batch_pair(model)
    loss = model.discriminator_loss(real, fake)[0]
    lr_, lf = model.discriminator(real), model.discriminator(fake)
    expected = (F.binary_cross_entropy_with_logits(lr_, torch.full_like(lr_, 0.9))
                + F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf)))
    assert torch.allclose(loss, expected, atol=1e-6)
    unsmoothed = small().discriminator_loss(real, fake)[0]
    assert not torch.allclose(loss, unsmoothed)


def test_label_noise_flips_the_given_share_of_labels():
    t_real, t_fake = discriminator_targets(5, 5, smoothing=0.1, flip_prob=1.0)
    assert torch.equal(t_real, torch.zeros(5)) and torch.allclose(t_fake, torch.full((5,), 0.9))
    t_real, t_fake = discriminator_targets(5, 5, flip_prob=0.0)
    assert torch.equal(t_real, torch.ones(5)) and torch.equal(t_fake, torch.zeros(5))
    torch.manual_seed(0)
    t_real, t_fake = discriminator_targets(20000, 20000, flip_prob=0.25)
    assert 0.23 < (t_real == 0).float().mean().item() < 0.27
    assert 0.23 < (t_fake == 1).float().mean().item() < 0.27
    model = small(label_noise=1.0)
    real, fake = batch_pair(model)
    lr_, lf = model.discriminator(real), model.discriminator(fake)
    expected = (F.binary_cross_entropy_with_logits(lr_, torch.zeros_like(lr_))
                + F.binary_cross_entropy_with_logits(lf, torch.ones_like(lf)))
    assert torch.allclose(model.discriminator_loss(real, fake)[0], expected, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# Virtual batch normalisation


def test_virtual_batch_norm_matches_the_original_formula():
    torch.manual_seed(0)
    vbn = VirtualBatchNorm(3)
    ref, x = torch.randn(6, 3, 4, 4) * 2 + 1, torch.randn(2, 3, 4, 4)
    out = vbn(torch.cat([ref, x]), n_ref=6)
    g, b = vbn.gamma.view(1, 3, 1, 1), vbn.beta.view(1, 3, 1, 1)
    ref_mean, ref_sq = ref.mean((0, 2, 3), keepdim=True), ref.square().mean((0, 2, 3), keepdim=True)
    expected_ref = (ref - ref_mean) / (1e-5 + ref_sq - ref_mean ** 2).sqrt() * g + b
    c = 1 / 7
    mean = c * x.mean((2, 3), keepdim=True) + (1 - c) * ref_mean
    sq = c * x.square().mean((2, 3), keepdim=True) + (1 - c) * ref_sq
    expected_x = (x - mean) / (1e-5 + sq - mean ** 2).sqrt() * g + b
    assert torch.allclose(out[:6], expected_ref, atol=1e-5)
    assert torch.allclose(out[6:], expected_x, atol=1e-5)
    flat = vbn(torch.randn(7, 3), n_ref=4)  # after a linear layer: (N, C)
    assert flat.shape == (7, 3)


def test_virtual_batch_norm_makes_each_sample_independent_of_its_batch():
    z = torch.randn(6, 8)
    vbn = small(virtual_batch_norm=True, vbn_reference_size=16).generator
    assert torch.allclose(vbn(z)[2:3], vbn(z[2:3]), atol=1e-5)
    assert "z_ref" in dict(vbn.named_buffers())
    bn = small().generator  # batch norm (train mode): the same noise gives a different image in another batch
    assert not torch.allclose(bn(z)[2:3], bn(z[2:3]), atol=1e-3)


# ----------------------------------------------------------------------------------------------------------------
# Minibatch standard deviation


def test_minibatch_std_appends_the_group_standard_deviation():
    x = torch.randn(8, 3, 4, 4)
    out = MinibatchStdDev(group_size=4)(x)
    assert out.shape == (8, 4, 4, 4) and torch.equal(out[:, :3], x)
    groups = x.reshape(4, 2, 3, 4, 4)  # group g: examples g, g + 2, g + 4, g + 6 (the original's reshape)
    stat = (groups.var(0, unbiased=False) + 1e-8).sqrt().mean((1, 2, 3))
    for i in range(8):
        assert torch.allclose(out[i, 3], stat[i % 2].expand(4, 4), atol=1e-6)
    same = MinibatchStdDev(4)(x[:1].repeat(8, 1, 1, 1))
    assert same[:, 3].max().item() < 1e-3  # no diversity: the feature is ~0
    assert MinibatchStdDev(4)(torch.randn(6, 2, 3, 3)).shape == (6, 3, 3, 3)  # group falls to gcd(6, 4) = 2
    d = small(minibatch_std=True).discriminator
    assert d.head.in_features == (4 * 8 + 1) * 9


# ----------------------------------------------------------------------------------------------------------------
# Unrolled GAN


def test_unrolled_parameters_are_gradient_steps_and_leave_the_discriminator_alone():
    model = small()
    real, fake = batch_pair(model)
    targets = model.targets(len(real), len(fake), CPU)
    before = copy.deepcopy(model.discriminator.state_dict())
    loss_fn = lambda d: model.discriminator_loss(real, fake, targets, d)[0]
    params, buffers = unrolled_parameters(model.discriminator, loss_fn, steps=1, lr=0.01)
    # One step by hand: theta - lr * dL/dtheta.
    reference = copy.deepcopy(model.discriminator)
    grads = torch.autograd.grad(model.discriminator_loss(real, fake, targets, reference)[0],
                                list(reference.parameters()))
    for (name, p), g in zip(reference.named_parameters(), grads):
        assert torch.allclose(params[name], p - 0.01 * g, atol=1e-6), name
    for key, value in model.discriminator.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed"
    # Five steps lower the discriminator loss on this batch.
    params, buffers = unrolled_parameters(model.discriminator, loss_fn, steps=5, lr=0.01)
    assert loss_fn(call_with(model.discriminator, params, buffers)).item() < loss_fn(model.discriminator).item()


def test_unrolled_generator_loss_uses_the_unrolled_discriminator():
    def generator_grad(**options):
        model = small(**options)
        real = torch.rand(8, 1, 28, 28) * 2 - 1
        torch.manual_seed(3)
        fake = model.generator(torch.randn(8, 8))
        targets = model.targets(8, 8, CPU)
        d = model.unrolled_discriminator(real, fake, targets) if model.options.unroll_steps else None
        loss = model.generator_loss(real, fake, d)
        return loss.item(), torch.autograd.grad(loss, list(model.generator.parameters()))[0]

    loss0, grad0 = generator_grad()
    loss_k, grad_k = generator_grad(unroll_steps=3)
    loss_first, grad_first = generator_grad(unroll_steps=3, unroll_second_order=False)
    assert loss_k == pytest.approx(loss_first, rel=1e-5)  # the same unrolled discriminator...
    assert loss_k > loss0  # ...which has learnt to reject these fakes
    assert not torch.allclose(grad_k, grad_first)  # ...but the full method also differentiates through the updates
    assert not torch.allclose(grad_k, grad0)
    assert torch.isfinite(grad_k).all()


def test_unrolled_training_step_updates_the_discriminator_as_usual():
    batch = Batch(torch.rand(8, 1, 28, 28))
    results = []
    for k in (0, 2):
        model = small(unroll_steps=k)
        torch.manual_seed(7)
        model.training_step(batch, optimizers(model))
        results.append({n: p.detach().clone() for n, p in model.discriminator.named_parameters()})
    for name in results[0]:
        assert torch.allclose(results[0][name], results[1][name]), name


# ----------------------------------------------------------------------------------------------------------------
# Everything at once


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_all_techniques_together_train(shape):
    model = small(shape, feature_matching=True, minibatch_discrimination=8, historical_averaging=1e-3,
                  label_smoothing=0.1, label_noise=0.05, virtual_batch_norm=True, vbn_reference_size=8,
                  minibatch_std=True, unroll_steps=1)
    start = copy.deepcopy(model.state_dict())
    opt = optimizers(model)
    for _ in range(2):
        metrics = model.training_step(Batch(torch.rand(8, *shape)), opt)
    assert set(metrics) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert all(torch.isfinite(torch.as_tensor(v)) for v in metrics.values())
    for net in ("generator", "discriminator"):
        assert any(not torch.equal(v, start[k]) for k, v in model.state_dict().items() if k.startswith(net))
