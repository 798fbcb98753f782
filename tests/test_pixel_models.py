"""PixelCNN and PixelRNN: causality by gradient (masks A and B, both LSTM variants, colour masks), the vectorised
layers against straightforward ones, the likelihood units, sampling, and a short training that lowers the test NLL."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from rlgen.common.run_dir import RunDir
from rlgen.vision.datasets import Batch, ImageDataset, static_binarize
from rlgen.vision.likelihood import PixelCNN, PixelCNNOptions, PixelRNN, PixelRNNOptions
from rlgen.vision.likelihood.masked import MaskedConv2d
from rlgen.vision.likelihood.outputs import (
    LN2,
    bernoulli_nll,
    bits_per_dim_to_nats,
    discretized_logistic_nll,
    nats_to_bits_per_dim,
    softmax_nll,
)
from rlgen.vision.likelihood.pixelrnn import DiagonalBiLSTMLayer
from rlgen.vision.likelihood.reference import loop_skew, to_reference
from rlgen.vision.trainer import Trainer, TrainerConfig

torch.set_num_threads(1)


def allowed(shape: tuple[int, int, int], i: int, j: int, c: int) -> torch.Tensor:
    """``(C, H, W)`` bool: the sub-pixels that output (i, j, channel c) may depend on (earlier pixels in raster
    order, earlier channels of the same pixel)."""
    channels, h, w = shape
    rows = torch.arange(h)[:, None].expand(h, w)
    cols = torch.arange(w)[None, :].expand(h, w)
    before = (rows < i) | ((rows == i) & (cols < j))
    out = before[None].repeat(channels, 1, 1)
    out[:c, i, j] = True
    return out


def input_gradient(network, shape: tuple[int, int, int], i: int, j: int, out_channels: slice) -> torch.Tensor:
    """d(sum of output channels ``out_channels`` at (i, j)) / d input, for one random float64 image."""
    torch.manual_seed(1)
    x = torch.randn(1, *shape, dtype=torch.float64, requires_grad=True)
    network(x)[0, out_channels, i, j].sum().backward()
    return x.grad[0]


def assert_causal(network, shape: tuple[int, int, int], per_channel: int, positions) -> None:
    """No output may depend on its own or later sub-pixels; the pixel to the left, the pixel above and the earlier
    channels of the same pixel must matter (so the check has something to find)."""
    channels = shape[0]
    for i, j in positions:
        for c in range(channels):
            grad = input_gradient(network, shape, i, j, slice(c * per_channel, (c + 1) * per_channel))
            ok = allowed(shape, i, j, c)
            assert grad[~ok].abs().max() == 0, f"output ({i}, {j}, {c}) depends on later sub-pixels"
            if j > 0:
                assert (grad[:, i, j - 1] != 0).any(), (i, j, c)
            if i > 0:
                assert (grad[:, i - 1, j] != 0).any(), (i, j, c)
            if c > 0:
                assert (grad[:c, i, j] != 0).any(), (i, j, c)


POSITIONS = [(0, 0), (0, 4), (2, 0), (3, 3), (5, 8)]


def small(model_cls, options_cls, channels: int = 1, output: str = "bernoulli", **kw):
    torch.manual_seed(0)
    opts = options_cls(image_shape=(channels, 6, 9), hidden=12, layers=2, output_hidden=24, output=output, **kw)
    return model_cls(opts).double()


# ----------------------------------------------------------------------------------------------------------------
# Masked convolutions


@pytest.mark.parametrize("kernel", [3, 5, 7, (1, 3)])
@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize("groups", [1, 3])
def test_masked_conv_sees_exactly_the_causal_taps(kernel, mask_type, groups):
    torch.manual_seed(0)
    conv = MaskedConv2d(3, 6, kernel, mask_type, groups=groups).double()
    with torch.no_grad():  # no accidental zeros among the allowed taps
        conv.weight.copy_((conv.weight.abs() + 0.1) * conv.mask)
    kh, kw = conv.kernel_size
    shape = (3, 9, 9)
    for o in range(6):
        g_out = o * groups // 6
        grad = input_gradient(conv, shape, 4, 4, slice(o, o + 1))
        window = torch.zeros(shape, dtype=torch.bool)
        window[:, 4 - kh // 2:4 + kh // 2 + 1, 4 - kw // 2:4 + kw // 2 + 1] = True
        expect = allowed(shape, 4, 4, 0) & window
        for c in range(3):
            g_in = c * groups // 3
            expect[c, 4, 4] = g_in < g_out if mask_type == "A" else g_in <= g_out
        assert torch.equal(grad != 0, expect), (o, kernel, mask_type, groups)
    # The stored half-kernel is the full masked kernel.
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64)
    full = torch.nn.functional.conv2d(x, conv.full_weight(), conv.bias, padding=(kh // 2, kw // 2))
    torch.testing.assert_close(conv(x), full)


# ----------------------------------------------------------------------------------------------------------------
# Causality of the whole models


@pytest.mark.parametrize("channels", [1, 3])
def test_pixelcnn_is_causal(channels):
    model = small(PixelCNN, PixelCNNOptions, channels)
    assert_causal(model.network, model.image_shape, 1, POSITIONS)


@pytest.mark.parametrize("skip_connections", [True, False])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("variant", ["rowlstm", "diagbilstm"])
def test_pixelrnn_is_causal(variant, channels, skip_connections):
    model = small(PixelRNN, PixelRNNOptions, channels, variant=variant, skip_connections=skip_connections)
    assert_causal(model.network, model.image_shape, 1, POSITIONS)


def test_pixelrnn_skip_connections_feed_the_output():
    """Every layer's skip convolution gets a gradient (each layer's map reaches the output), and none exist
    without them."""
    model = small(PixelRNN, PixelRNNOptions, variant="rowlstm")
    x = torch.bernoulli(torch.full((2, 1, 6, 9), 0.5, dtype=torch.float64))
    model.nll(x).sum().backward()
    assert all(skip.weight.grad.abs().sum() > 0 for skip in model.skips)
    assert small(PixelRNN, PixelRNNOptions, variant="rowlstm", skip_connections=False).skips is None


def test_softmax_output_is_causal_per_colour():
    model = small(PixelRNN, PixelRNNOptions, 3, "softmax", variant="diagbilstm")
    assert_causal(model.network, model.image_shape, 256, [(3, 3)])


def test_diagonal_bilstm_sees_the_whole_context_and_row_lstm_a_triangle():
    # Pixel (2, 0) and the top-right pixel (0, 8), far outside the 7x7 input convolution: the right-to-left
    # direction of the Diagonal BiLSTM brings it (along row 1, then down); the Row LSTM's triangular receptive
    # field does not reach it. ((1, 0) cannot see (0, 8) in either: the image pixel only enters the network at
    # the positions after it that the 7x7 mask-A kernel covers, the first of them (1, 5).)
    shape = (1, 6, 9)
    diag = small(PixelRNN, PixelRNNOptions, variant="diagbilstm")
    row = small(PixelRNN, PixelRNNOptions, variant="rowlstm")
    assert input_gradient(diag.network, shape, 2, 0, slice(0, 1))[0, 0, 8] != 0
    assert input_gradient(row.network, shape, 2, 0, slice(0, 1))[0, 0, 8] == 0


def test_causality_check_catches_an_unshifted_right_to_left_direction(monkeypatch):
    model = small(PixelRNN, PixelRNNOptions, variant="diagbilstm")
    monkeypatch.setattr(DiagonalBiLSTMLayer, "shift_down", staticmethod(lambda right: right))
    with pytest.raises(AssertionError, match="depends on later"):
        assert_causal(model.network, model.image_shape, 1, [(2, 3)])


# ----------------------------------------------------------------------------------------------------------------
# Vectorised layers against straightforward ones


def test_the_diagonal_layout_is_the_skewed_maps_step_by_step_and_back():
    """Into the recurrence: column t of the skewed map (of the flipped map, right to left) at step t, position-major;
    back: the inverse, the right-to-left direction flipped back. The active rows of each step are those on the image.
    Both gathers' gradients are their transposes."""
    from rlgen.vision.likelihood.diagonal_layout import DiagonalLayout

    n, c, h, height, width = 2, 3, 2, 5, 7
    x = torch.randn(n, c, height, width, dtype=torch.float64, requires_grad=True)
    layout = DiagonalLayout(c, h, height, width, torch.device("cpu"))
    steps = layout.to_steps(x)
    assert steps.shape == (height + width - 1, 2, c, height, n)
    for d, image in enumerate((x, x.flip(3))):
        torch.testing.assert_close(steps[:, d], loop_skew(image).permute(3, 1, 2, 0))
    on_image = loop_skew(torch.ones(1, 1, height, width))[0, 0].t().bool()  # (steps, rows)
    for t, (lo, hi) in enumerate(layout.active):
        assert on_image[t].nonzero().view(-1).tolist() == list(range(lo, hi))
    states = torch.randn(height + width - 1, 2, h, height, n, dtype=torch.float64, requires_grad=True)
    maps = layout.to_maps(states)
    for d in range(2):  # back through the layout: a map whose steps are the states
        image = maps[:, d] if d == 0 else maps[:, d].flip(3)
        torch.testing.assert_close(loop_skew(image).permute(3, 1, 2, 0),
                                   states[:, d] * on_image[:, None, :, None])
    assert torch.autograd.gradcheck(layout.to_steps, (x,)) and torch.autograd.gradcheck(layout.to_maps, (states,))


@pytest.mark.parametrize("channels,output", [(1, "bernoulli"), (3, "softmax")])
@pytest.mark.parametrize("build", ["pixelcnn", "rowlstm", "diagbilstm"])
def test_vectorised_models_equal_the_straightforward_ones(build, channels, output):
    model = (small(PixelCNN, PixelCNNOptions, channels, output) if build == "pixelcnn"
             else small(PixelRNN, PixelRNNOptions, channels, output, variant=build))
    reference = to_reference(model)
    assert not any(isinstance(m, MaskedConv2d) for m in reference.modules())
    x = torch.rand(3, channels, 6, 9, dtype=torch.float64)
    torch.testing.assert_close(model(x), reference(x))


# ----------------------------------------------------------------------------------------------------------------
# Likelihood units


def test_bernoulli_nll_in_nats_matches_a_hand_computation():
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 3.0]]]])
    x = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    p = 1 / (1 + np.exp(-np.array([0.0, 2.0, -1.0, 3.0])))
    hand = -(np.log(p[0]) + np.log(1 - p[1]) + np.log(1 - p[2]) + np.log(p[3]))
    assert bernoulli_nll(logits, x).item() == pytest.approx(hand, rel=1e-6)


def test_softmax_nll_in_bits_per_dim_matches_a_hand_computation():
    logits = torch.zeros(1, 256, 1, 1, 2)
    logits[0, 10, 0, 0, 0] = 3.0  # sub-pixel 0 at level 10: p = e^3 / (e^3 + 255)
    x = torch.tensor([[[[10 / 255, 200 / 255]]]])
    nats = softmax_nll(logits, x).item()
    hand = -math.log(math.exp(3) / (math.exp(3) + 255)) + math.log(256)  # sub-pixel 1: uniform
    assert nats == pytest.approx(hand, rel=1e-6)
    assert nats_to_bits_per_dim(nats, 2) == pytest.approx(hand / (2 * math.log(2)), rel=1e-6)
    assert bits_per_dim_to_nats(8.0, 784) == pytest.approx(784 * 8 * math.log(2))


def test_models_report_nats_for_binary_and_bits_per_dim_for_8bit():
    # A zeroed output layer is the uniform model: 1 bit per binary pixel, 8 bits per 8-bit sub-pixel.
    for output, channels, expect_bits in (("bernoulli", 1, 1.0), ("softmax", 3, 8.0)):
        model = PixelCNN(PixelCNNOptions((channels, 5, 4), hidden=3, layers=1, output_hidden=3, output=output))
        torch.nn.init.zeros_(model.output_net[-1].weight)
        torch.nn.init.zeros_(model.output_net[-1].bias)
        x = torch.randint(0, 2, (4, channels, 5, 4)).float() if output == "bernoulli" else torch.rand(4, channels, 5, 4)
        loss, metrics = model.loss(Batch(x))
        dims = channels * 20
        assert metrics["bits_per_dim"].item() == pytest.approx(expect_bits, rel=1e-6)
        assert metrics["nats"].item() == pytest.approx(expect_bits * dims * LN2, rel=1e-6)
        assert loss.item() == pytest.approx(metrics["nats" if output == "bernoulli" else "bits_per_dim"].item())


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_discretized_logistic_is_a_distribution_over_256_levels():
    levels = torch.arange(256).float().view(256, 1, 1, 1) / 255
    for mean, log_scale in ((0.0, -2.0), (0.7, -4.0), (-0.99, -1.0), (0.3, -9.0)):
        nll = discretized_logistic_nll(torch.full_like(levels, mean), torch.tensor(log_scale), levels)
        assert torch.exp(-nll.double()).sum().item() == pytest.approx(1.0, abs=2e-3)
    # One inner bin by hand: sigmoid((x + 1/255 - m) / s) - sigmoid((x - 1/255 - m) / s) on the [-1, 1] scale.
    x, m, s = 2 * 100 / 255 - 1, 0.1, math.exp(-2.0)
    hand = -math.log(sigmoid((x + 1 / 255 - m) / s) - sigmoid((x - 1 / 255 - m) / s))
    got = discretized_logistic_nll(torch.tensor([[[[m]]]]), torch.tensor(-2.0), torch.tensor([[[[100 / 255]]]]))
    assert got.item() == pytest.approx(hand, rel=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# Sampling and training


def test_sampling_draws_binary_or_8bit_images_and_logs_its_time(caplog):
    caplog.set_level(logging.INFO, logger="rlgen")
    torch.manual_seed(0)
    binary = PixelRNN(PixelRNNOptions((1, 5, 5), "diagbilstm", hidden=3, layers=1, output_hidden=3))
    images = binary.sample(3)
    assert images.shape == (3, 1, 5, 5) and set(images.unique().tolist()) <= {0.0, 1.0}
    assert binary.last_sample_seconds > 0 and "sampled 3 images" in caplog.text
    rgb = PixelCNN(PixelCNNOptions((3, 4, 4), hidden=3, layers=1, output_hidden=3, output="softmax"))
    images = rgb.sample(2)
    assert images.shape == (2, 3, 4, 4)
    assert torch.allclose(images * 255, (images * 255).round()) and 0 <= images.min() and images.max() <= 1


def test_sampling_follows_the_conditionals():
    # A PixelCNN that copies the pixel to its left (a huge weight on that tap) makes every row constant.
    torch.manual_seed(0)
    model = PixelCNN(PixelCNNOptions((1, 4, 6), hidden=1, layers=0, output_hidden=1))
    with torch.no_grad():
        for conv in (model.input_conv, *model.output_net[1::2]):
            conv.weight.zero_()
            conv.bias.zero_()
        model.input_conv.weight[:, 0, 3, 2] = 1.0  # left neighbour, input scaled to {-1, 1}
        model.input_conv.bias.fill_(1.0)  # so the relu passes: 0 for a 0 pixel, 2 for a 1 pixel
        model.output_net[1].weight.fill_(1.0)
        model.output_net[3].weight.fill_(40.0)
        model.output_net[3].bias.fill_(-40.0)  # logit -40 after a 0, +40 after a 1
    images = model.sample(8)
    assert torch.equal(images, images[:, :, :, :1].expand_as(images))


def blobs(n: int, size: int, seed: int) -> ImageDataset:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    centres = rng.uniform(3, size - 3, (n, 2))
    images = 255 * np.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 6)
    return static_binarize(ImageDataset("blobs", images.astype(np.uint8)[:, None]), seed)


@pytest.mark.parametrize("build", ["pixelcnn", "rowlstm", "diagbilstm"])
def test_short_training_lowers_the_test_nll(tmp_path, build):
    train, test = blobs(96, 10, 0), blobs(48, 10, 1)
    torch.manual_seed(0)
    if build == "pixelcnn":
        model = PixelCNN(PixelCNNOptions((1, 10, 10), hidden=8, layers=2, output_hidden=16))
    else:
        model = PixelRNN(PixelRNNOptions((1, 10, 10), build, hidden=8, layers=1, output_hidden=16))
    x_test = torch.from_numpy(test.images).float() / 255

    def test_nll() -> float:
        model.eval()
        with torch.no_grad():
            return model.nll(x_test).mean().item()

    before = test_nll()
    run = RunDir.create(tmp_path, "test", build, 0, {"command": "test"})
    cfg = TrainerConfig(epochs=4, batch_size=16, lr=3e-3, beta1=0.9, log_every=0, sample_every=100, n_samples=1)
    Trainer(model, run, train, cfg, "cpu", eval_data=test).fit()
    after = test_nll()
    assert after < before - 10, (before, after)  # nats per 100-pixel image


def test_under_bf16_autocast_the_logits_stay_fp32_and_the_nll_barely_moves():
    """The body runs in bf16, the output layers in fp32 (so the NLL summed over 784 pixels is not blurred)."""
    torch.manual_seed(0)
    model = PixelCNN(PixelCNNOptions(hidden=16, layers=4, output_hidden=32)).eval()
    x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.2))
    with torch.no_grad():
        fp32 = model.nll(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x)
            bf16 = model.nll(x)
    assert logits.dtype == torch.float32 and bf16.dtype == torch.float32
    assert (bf16 - fp32).abs().max().item() < 0.5  # nats per image, of about 550 (an untrained model)


@pytest.mark.parametrize("input_taps", [None, (1, 0), (2, 1), (3, 1)])  # (k_in, in_left), None: no in_weight
@pytest.mark.parametrize("left,k", [(1, 2), (1, 3), (0, 1)])
@pytest.mark.parametrize("ranges", [False, True])
def test_the_recurrences_hand_written_backward_is_the_gradient(input_taps, left, k, ranges):
    """torch.autograd.gradcheck (float64) of every input of the LSTM recurrence, with steps that compute all their
    positions or a range of them (positions outside it stay 0), and input products with taps along the line."""
    from rlgen.vision.likelihood.recurrence import lstm_recurrence

    torch.manual_seed(0)
    t_steps, d, h, length, n = 4, 2, 2, 3, 2
    channels = 3 if input_taps else 4 * h
    inputs = torch.randn(t_steps, d, channels, length, n, dtype=torch.float64).requires_grad_()
    weight = (0.5 * torch.randn(d, 4 * h, k * h, dtype=torch.float64)).requires_grad_()
    active = [(0, 1), (0, 2), (1, 3), (2, 3)] if ranges else None
    args: dict = {}
    if input_taps:
        args = {"in_weight": torch.randn(d, 4 * h, input_taps[0] * channels, dtype=torch.float64).requires_grad_(),
                "bias": torch.randn(d * 4 * h, dtype=torch.float64).requires_grad_()}

    def f(inputs, weight, *rest):
        return lstm_recurrence(inputs, weight, left, **dict(zip(args, rest)), active=active,
                               in_left=input_taps[1] if input_taps else 0)

    out = f(inputs, weight, *args.values())
    if ranges:
        for t, (lo, hi) in enumerate(active):
            assert out[t, ..., :lo, :].eq(0).all() and out[t, ..., hi:, :].eq(0).all()
    assert torch.autograd.gradcheck(f, (inputs, weight, *args.values()), eps=1e-6, atol=1e-6)


def test_a_recurrence_on_a_range_equals_the_full_one_where_nothing_outside_reaches():
    """Steps that compute only the rows of a diagonal (as the Diagonal BiLSTM's skewed map) give the states the full
    recurrence gives on them when the inputs elsewhere are 0 and no bias is added off the diagonal."""
    from rlgen.vision.likelihood.diagonal_layout import DiagonalLayout
    from rlgen.vision.likelihood.recurrence import lstm_recurrence

    torch.manual_seed(0)
    n, c, h, height, width = 2, 4, 2, 4, 5
    layout = DiagonalLayout(c, h, height, width, torch.device("cpu"))
    inputs = layout.to_steps(torch.randn(n, c, height, width, dtype=torch.float64))  # 0 off the image
    weight = torch.randn(2, 4 * h, 2 * h, dtype=torch.float64)
    in_weight = torch.randn(2, 4 * h, c, dtype=torch.float64)
    ranged = lstm_recurrence(inputs, weight, 1, in_weight=in_weight, active=layout.active)
    full = lstm_recurrence(inputs, weight, 1, in_weight=in_weight)
    for t, (lo, hi) in enumerate(layout.active):
        torch.testing.assert_close(ranged[t, :, :, lo:hi], full[t, :, :, lo:hi])


@pytest.mark.parametrize("variant", ["rowlstm", "diagbilstm"])
def test_pixelrnn_parameter_gradients_equal_the_straightforward_models(variant):
    """Backpropagation through the whole model (recurrences, skew, flips) equals autograd on the reference."""
    model = small(PixelRNN, PixelRNNOptions, 1, "bernoulli", variant=variant)
    reference = to_reference(model)
    x = torch.rand(3, 1, 6, 9, dtype=torch.float64)
    model(x).square().sum().backward()
    reference(x).square().sum().backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    compared = []
    for name, p in reference.named_parameters():  # the parameters both share (the masked ones are stored apart)
        if name in grads and p.grad is not None and p.grad.shape == grads[name].shape:
            torch.testing.assert_close(grads[name], p.grad, msg=name)
            compared.append(name)
    assert "input_conv.bias" in compared  # its gradient flows back through every layer's recurrence
