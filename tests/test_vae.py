"""VAE and IAF: MADE's autoregressive property, IAF's log-determinant against autograd, the reversed ordering,
ELBO <= importance-sampled log p(x), free bits, and a short training that lowers the test NLL."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian

from rlgen.common.run_dir import RunDir
from rlgen.vision.datasets import Batch, ImageDataset, static_binarize
from rlgen.vision.likelihood import IAF, MADE, ConvIAF, IAFStep, VAEOptions, make_vae
from rlgen.vision.likelihood.reference import reference_log_likelihood
from rlgen.vision.trainer import Trainer, TrainerConfig

torch.set_num_threads(1)


def lower(n: int) -> torch.Tensor:
    """Strictly lower-triangular True: entry (d, e) with e < d."""
    return torch.ones(n, n).tril(-1).bool()


# ----------------------------------------------------------------------------------------------------------------
# MADE and IAF


@pytest.mark.parametrize("reverse", [False, True])
def test_made_is_autoregressive_by_jacobian(reverse):
    torch.manual_seed(0)
    dim = 7
    made = MADE(dim, [24, 24], context_dim=3, n_outputs=2, reverse=reverse).double()
    z, h = torch.randn(dim, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    allowed = lower(dim) if not reverse else lower(dim).T  # output d may see inputs before d in the ordering
    for out in range(2):
        jac = jacobian(lambda v, out=out: made(v[None], h[None])[out][0], z)
        assert jac[~allowed].abs().max() == 0
        assert (jac[allowed] != 0).all()  # and every earlier input does matter
    # The context (added to the first hidden layer, as in openai/iaf) reaches every output but the first in the
    # ordering, which sees no hidden unit at all.
    jac_h = jacobian(lambda c: made(z[None], c[None])[0][0], h)
    first = dim - 1 if reverse else 0
    reached = jac_h.abs().sum(1) > 0
    assert not reached[first] and reached.sum() == dim - 1


def test_iaf_log_det_equals_the_autograd_jacobian():
    torch.manual_seed(0)
    dim = 6
    iaf = IAF(dim, steps=3, hidden=[16, 16], context_dim=4).double()
    with torch.no_grad():  # move away from the near-identity initialisation
        for p in iaf.parameters():
            p.add_(0.3 * torch.randn_like(p))
    h = torch.randn(1, 4, dtype=torch.float64)
    for _ in range(3):
        z = torch.randn(1, dim, dtype=torch.float64)
        _, log_det = iaf(z, h)
        jac = jacobian(lambda v: iaf(v[None], h)[0][0], z[0])
        assert log_det.sum().item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), abs=1e-9)


def test_conv_iaf_log_det_equals_the_autograd_jacobian():
    torch.manual_seed(0)
    iaf = ConvIAF(z_channels=2, steps=2, hidden=[4, 4]).double()
    with torch.no_grad():
        for p in iaf.parameters():
            p.add_(0.5 * torch.randn_like(p))
    context = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    z = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    _, log_det = iaf(z, context)
    jac = jacobian(lambda v: iaf(v.view(1, 2, 3, 3), context)[0].flatten(), z.flatten())
    assert log_det.sum().item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), abs=1e-9)
    # Each step alone is triangular in its (pixel, channel) ordering: the second one reversed.
    for t in range(2):
        single = ConvIAF(2, 1, [4, 4]).double()
        single.steps[0] = iaf.steps[t]
        flip = t % 2 == 1

        def step(v: torch.Tensor, flip: bool = flip, single: ConvIAF = single) -> torch.Tensor:
            v = v.view(1, 2, 3, 3)
            if flip:
                return single(v.flip(1, 2, 3), context.flip(2, 3))[0].flip(1, 2, 3).flatten()
            return single(v, context)[0].flatten()

        order = torch.arange(18).view(2, 3, 3).permute(1, 2, 0).flatten()  # raster pixels, then channels
        jac = jacobian(step, z.flatten())[order][:, order]
        forbidden = torch.ones(18, 18).triu(1).bool() if not flip else torch.ones(18, 18).tril(-1).bool()
        assert jac[forbidden].abs().max() == 0, t


def test_iaf_reverses_the_ordering_between_steps():
    torch.manual_seed(0)
    dim = 5
    iaf = IAF(dim, steps=2, hidden=[20], context_dim=0).double()
    z = torch.randn(dim, dtype=torch.float64)
    first = jacobian(lambda v: iaf.steps[0](v[None])[0][0], z)
    second = jacobian(lambda v: iaf.steps[1](v[None])[0][0], z)
    assert first.triu(1).abs().max() == 0 and (first.tril(-1)[lower(dim)] != 0).all()  # z'_d sees z_<d
    assert second.tril(-1).abs().max() == 0 and (second.triu(1)[lower(dim).T] != 0).all()  # z'_d sees z_>d
    both = jacobian(lambda v: iaf(v[None])[0][0], z)
    assert (both != 0).all()  # two reversed steps: every output depends on every input


def test_iaf_step_starts_near_the_identity_and_its_log_det_is_log_sigma():
    torch.manual_seed(0)
    step = IAFStep(4, [8], context_dim=0)
    z = torch.randn(10, 4)
    out, log_sigma = step(z)
    m, s = step.made(z)
    assert torch.allclose(out, torch.sigmoid(s) * z + (1 - torch.sigmoid(s)) * m)
    assert torch.allclose(log_sigma, torch.log(torch.sigmoid(s)))
    assert torch.sigmoid(s).mean() > 0.6  # forget-gate bias +1


# ----------------------------------------------------------------------------------------------------------------
# ELBO, importance sampling, free bits


def tiny_options(**kw) -> VAEOptions:
    base = {"image_shape": (1, 8, 8), "z_dim": 4, "hidden": 8, "iaf_hidden": 16, "context_dim": 8, "iw_samples": 0}
    return VAEOptions(**{**base, **kw})


def binary_batch(n: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, 1, 8, 8), 0.3), generator=g)


@pytest.mark.parametrize("kw", [{}, {"iaf_steps": 2}, {"bidirectional": True, "levels": 2, "blocks_per_level": 1,
                                                         "iaf_steps": 1}])
def test_elbo_does_not_exceed_the_importance_sampled_log_likelihood(kw):
    torch.manual_seed(1)
    vae = make_vae(tiny_options(**kw)).double().eval()
    with torch.no_grad():  # away from the initialisation, where q(z|x) is the prior and the decoder ignores z
        for p in vae.parameters():
            p.add_(0.2 * torch.randn_like(p))
    x = binary_batch().double()
    with torch.no_grad():
        elbo = torch.stack([vae.elbo(x) for _ in range(100)])  # log w of single draws
        iw = {k: torch.stack([vae.log_likelihood(x, k) for _ in range(20)]) for k in (1, 10, 100)}

    def mean_and_error(draws: torch.Tensor) -> tuple[float, float]:
        per_draw = draws.mean(1)  # averaged over the 16 images
        return per_draw.mean().item(), per_draw.std().item() / math.sqrt(len(per_draw))

    (e, se_e), (i1, se1), (i10, se10), (i100, se100) = map(mean_and_error, (elbo, iw[1], iw[10], iw[100]))
    # On average over images and draws: ELBO = IWAE_1 < IWAE_10 < IWAE_100, by many standard errors.
    assert abs(i1 - e) < 4 * (se1 + se_e)
    assert i10 - e > 4 * (se_e + se10) and i100 - i10 > 4 * (se10 + se100)
    assert (elbo.mean(0) <= iw[100].mean(0)).all()  # and image by image


def test_under_bf16_autocast_the_likelihood_terms_stay_fp32_and_barely_move():
    """The convolutional VAE's convolutions run in bf16 under autocast; the decoder's logits, the posterior, the
    flow and the densities stay fp32, and the ELBO (the same draw of eps) moves by little."""
    torch.manual_seed(0)
    vae = make_vae(tiny_options(iaf_steps=2)).eval()
    x = binary_batch()
    with torch.no_grad():
        torch.manual_seed(5)
        fp32 = vae.elbo(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.manual_seed(5)
            out, kls = vae.encode_decode(x)
            torch.manual_seed(5)
            bf16 = vae.elbo(x)
    assert out.dtype == torch.float32 and all(kl.dtype == torch.float32 for kl in kls)
    assert bf16.dtype == torch.float32
    assert (bf16 - fp32).abs().max().item() < 0.5  # nats per image, of about 45 (64 pixels, untrained)
    assert (bf16 - fp32).abs().max().item() > 0  # the convolutions did run in bf16


def test_the_conv_vae_runs_channels_last_with_the_same_elbo_and_gradients():
    """Its convolutions take NHWC (faster on the CPU); the numbers are those of the usual layout, and a state dict
    saved either way loads into the other."""
    torch.manual_seed(0)
    fast = make_vae(tiny_options(iaf_steps=1))
    assert fast.encoder[0].weight.is_contiguous(memory_format=torch.channels_last)
    plain = make_vae(tiny_options(iaf_steps=1)).to(memory_format=torch.contiguous_format)
    plain.load_state_dict(fast.state_dict())
    x = binary_batch()
    losses = []
    for vae in (fast, plain):
        torch.manual_seed(5)
        loss = -vae.elbo(x).mean()
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)
    for a, b in zip(fast.parameters(), plain.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5)
    fast.load_state_dict(plain.state_dict())  # and back


def test_importance_sampling_is_vectorised_and_chunked():
    torch.manual_seed(0)
    vae = make_vae(tiny_options(iaf_steps=1)).double().eval()
    x = binary_batch(4).double()
    with torch.no_grad():
        torch.manual_seed(1)
        one_pass = vae.log_likelihood(x, 64)
        torch.manual_seed(1)
        chunked = vae.log_likelihood(x, 64, max_batch=40)  # 10 samples per network pass
        loop = torch.stack([reference_log_likelihood(vae, x, 64) for _ in range(10)]).mean(0)
    assert one_pass.shape == (4,)
    # Different chunks draw different noise, so compare in distribution: all estimate the same log p(x).
    assert torch.allclose(one_pass, loop, atol=1.5) and torch.allclose(chunked, loop, atol=1.5)


def test_free_bits_changes_the_kl_term_as_specified():
    vae = make_vae(tiny_options(free_bits=0.5))
    kl_vec = torch.tensor([[0.1, 2.0, 0.2], [0.3, 1.0, 0.2]])  # (N, dims): batch means 0.2, 1.5, 0.2
    assert vae.kl_objective([kl_vec]).item() == pytest.approx(0.5 + 1.5 + 0.5)
    kl_map = torch.zeros(2, 2, 3, 3)
    kl_map[:, 0] = 0.01  # feature map 0: 0.09 nats per image, below the floor
    kl_map[0, 1] = 1.0  # feature map 1: 9 nats for image 0, 0 for image 1: mean 4.5
    assert vae.kl_objective([kl_vec, kl_map]).item() == pytest.approx(2.5 + 0.5 + 4.5)
    vae.options.free_bits = 0.0  # off: the plain KL, summed over latents and averaged over images
    assert vae.kl_objective([kl_vec, kl_map]).item() == pytest.approx((2.3 + 1.5) / 2 + (0.18 + 9) / 2)

    # In a model: with a floor above every group's KL, the KL term is the constant floor * groups and gives the
    # encoder no gradient; without free bits it does.
    torch.manual_seed(0)
    vae = make_vae(tiny_options(free_bits=1e3))
    batch = Batch(binary_batch())
    loss, metrics = vae.loss(batch)
    assert loss.item() == pytest.approx(metrics["recon_nats"].item() + 1e3 * 4, rel=1e-6)
    _, kls = vae.terms(batch.x)
    grads = torch.autograd.grad(vae.kl_objective(kls), vae.posterior.weight, allow_unused=True)[0]
    assert grads is None or grads.abs().max() == 0
    vae.options.free_bits = 0.0
    _, kls = vae.terms(batch.x)
    assert torch.autograd.grad(vae.kl_objective(kls), vae.posterior.weight)[0].abs().max() > 0


def test_free_bits_of_the_ladder_are_per_feature_map_and_layer():
    torch.manual_seed(0)
    vae = make_vae(tiny_options(bidirectional=True, levels=2, blocks_per_level=1, z_dim=3, free_bits=1e3))
    loss, metrics = vae.loss(Batch(binary_batch()))
    assert loss.item() == pytest.approx(metrics["recon_nats"].item() + 1e3 * 3 * 2, rel=1e-6)  # 3 maps x 2 layers


def test_8bit_vae_reports_bits_per_dim_and_samples_images(caplog):
    caplog.set_level(logging.INFO, logger="rlgen")
    torch.manual_seed(0)
    vae = make_vae(tiny_options(image_shape=(3, 8, 8), output="logistic", iaf_steps=1, iw_samples=4))
    x = torch.rand(5, 3, 8, 8)
    loss, metrics = vae.loss(Batch(x))
    assert loss.item() == pytest.approx(metrics["neg_elbo_nats"].item() / (192 * math.log(2)), rel=1e-5)
    with torch.no_grad():
        evaluation = vae.evaluation_step(Batch(x))
    assert evaluation["loss"] == evaluation["bits_per_dim"] and "nll_iw_bits_per_dim" in evaluation
    images = vae.sample(6)
    assert images.shape == (6, 3, 8, 8) and 0 <= images.min() and images.max() <= 1
    assert "sampled 6 images" in caplog.text and vae.last_sample_seconds >= 0


# ----------------------------------------------------------------------------------------------------------------
# Training


def digits(n: int, seed: int) -> ImageDataset:
    """Blobs on 12x12, statically binarised."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:12, :12]
    centres = rng.uniform(3, 9, (n, 2))
    images = 255 * np.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 8)
    return static_binarize(ImageDataset("blobs", images.astype(np.uint8)[:, None]), seed)


@pytest.mark.parametrize("kw", [{}, {"iaf_steps": 2}, {"bidirectional": True, "levels": 2, "blocks_per_level": 1,
                                                         "iaf_steps": 1, "free_bits": 0.05}])
def test_short_training_lowers_the_test_nll(tmp_path, kw):
    train, test = digits(128, 0), digits(64, 1)
    torch.manual_seed(0)
    vae = make_vae(VAEOptions(image_shape=(1, 12, 12), z_dim=8, hidden=16, iaf_hidden=32, context_dim=16,
                              iw_samples=16, **kw))
    x_test = torch.from_numpy(test.images).float() / 255

    def test_nll() -> float:
        vae.eval()
        with torch.no_grad():
            torch.manual_seed(5)
            return -vae.log_likelihood(x_test, 16).mean().item()

    before = test_nll()
    run = RunDir.create(tmp_path, "test", "vae", 0, {"command": "test"})
    cfg = TrainerConfig(epochs=6, batch_size=16, lr=3e-3, beta1=0.9, log_every=0, sample_every=100, n_samples=4)
    Trainer(vae, run, train, cfg, "cpu", eval_data=test).fit()
    after = test_nll()
    assert after < before - 15, (before, after)  # nats per 144-pixel image
