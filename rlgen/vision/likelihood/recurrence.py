"""The LSTM recurrence of the PixelRNN layers as one autograd function with a hand-written backward.

Row LSTM and Diagonal BiLSTM run the same recurrence over ``T`` steps (rows, or the columns of the skewed map), each
step a whole line of ``L`` positions in each of ``N`` images, for ``D`` independent directions::

    a_t = x_t + K * s_{t-1}          K: a 1-d convolution of k taps along the line, one per direction
    o, f, i = sigmoid(a_t[o, f, i]),  g = tanh(a_t[g]),  c_t = f c_{t-1} + i g,  s_t = o tanh(c_t)

Under autograd every step records a dozen small nodes, slicing the gates or a convolution's output costs a
zero-filled gradient per step, and oneDNN's convolutions are slow at these sizes; a 7-layer Diagonal BiLSTM on 64
MNIST images took 4 s a step. Here each step's lines are one padded row of ``(D, channels, N (L + 1))`` positions,
so that each of the k taps of the kernel is one batched matrix product with a contiguous slice of the previous
state; the forward keeps each step's gate activations and cells, and backpropagation through time runs by hand:
per step a few element-wise ops and, per tap, two batched matrix products (the state's gradient, and the kernel's,
accumulated).
"""

from __future__ import annotations

import torch


def fast_tanh(x: torch.Tensor) -> torch.Tensor:
    """``tanh(x) = 2 sigmoid(2x) - 1``: PyTorch's CPU tanh is not vectorised (6.9 ns an element on an AVX-512 core,
    sigmoid 0.4 ns), and the LSTM takes four tanh per step; the absolute error is within float rounding."""
    return torch.sigmoid(2 * x).mul_(2).sub_(1)


class _LSTMRecurrence(torch.autograd.Function):
    """The recurrence on a padded, flat layout: each line has one zero position in front, so that the ``N`` lines
    of a step are one row of ``M = N (L + 1)`` positions and every tap of the kernel reads one contiguous slice of
    the previous state (the pads keep lines apart); each step's state is kept in ``(D, h, M + 2)``, with a zero at
    each end for the taps that reach past the row. Pad positions are computed and then zeroed: the state there is 0
    and no gradient flows through it. With ``in_weight``, the input-to-state product is taken step by step too, so
    the ``(T, D, 4h, ...)`` gates of all steps never exist in memory: on a CPU this recurrence is bound by memory
    traffic."""

    @staticmethod
    def forward(ctx, inputs: torch.Tensor, in_weight: torch.Tensor | None, bias: torch.Tensor | None,  # type: ignore[override]
                bias_mask: torch.Tensor | None, weight: torch.Tensor, left: int):
        t_steps, d, channels, n, width = inputs.shape  # width = L + 1, the pad first
        four_h = weight.shape[1]
        h = four_h // 4
        k = weight.shape[2] // h
        m = n * width
        flat_in = inputs.view(t_steps, d, channels, m)
        taps = [w.contiguous() for w in weight.view(d, four_h, k, h).unbind(2)]  # (D, 4h, h) each
        states = inputs.new_zeros(t_steps, d, h, m + 2)  # position p of the row at p + 1
        cell = inputs.new_zeros(d, h, m)
        saved: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for t in range(t_steps):
            if in_weight is None:
                a = flat_in[t].clone()
            else:
                a = torch.bmm(in_weight, flat_in[t])
                if bias is not None:  # where the step's mask says so (not at the pads, nor off the image)
                    a.view(d, four_h, n, width).add_(bias.view(d, four_h, 1, 1) * bias_mask[t])
            if t > 0:
                previous = states[t - 1]
                for j, w in enumerate(taps):  # tap j reads the previous state at p + j - left
                    a.baddbmm_(w, previous[:, :, 1 + j - left:1 + j - left + m])
            a = a.view(d, 4, h, m)
            ofi = torch.sigmoid(a[:, :3])
            g = fast_tanh(a[:, 3])
            cell = torch.addcmul(ofi[:, 1] * cell, ofi[:, 2], g)
            row = states[t, :, :, 1:m + 1]
            row.copy_(ofi[:, 0] * fast_tanh(cell))  # (out= into this strided row is slow)
            row[:, :, ::width] = 0  # the pad in front of each line
            saved.append((ofi, g, cell))
        ctx.save_for_backward(inputs, in_weight, bias, bias_mask, weight, states)
        ctx.saved, ctx.left = saved, left
        return states[:, :, :, 1:m + 1].view(t_steps, d, h, n, width)

    @staticmethod
    def backward(ctx, grad_states: torch.Tensor):  # type: ignore[override]
        inputs, in_weight, bias, bias_mask, weight, states = ctx.saved_tensors
        saved, left = ctx.saved, ctx.left
        t_steps, d, channels, n, width = inputs.shape
        h = weight.shape[1] // 4
        k = weight.shape[2] // h
        m = n * width
        flat_in = inputs.view(t_steps, d, channels, m)
        grad_states = grad_states.reshape(t_steps, d, h, m)
        grad_inputs = grad_states.new_empty(t_steps, d, channels, m)
        grad_in_weight = None if in_weight is None else torch.zeros_like(in_weight)
        grad_bias = None if bias is None else grad_states.new_zeros(d, 4 * h, width)
        in_weight_t = None if in_weight is None else in_weight.transpose(1, 2).contiguous()
        da = grad_states.new_empty(d, 4, h, m)  # the gates' gradients in the layout of the gates themselves
        taps = weight.view(d, 4 * h, k, h).unbind(2)
        taps_t = [w.transpose(1, 2).contiguous() for w in taps]
        grad_taps = [torch.zeros_like(w) for w in taps]
        carry = grad_states.new_zeros(d, h, m + 2)  # dL/ds_t through step t + 1's kernel, positioned as states
        carry_cell = grad_states.new_zeros(d, h, m)
        for t in range(t_steps - 1, -1, -1):
            ofi, g, cell = saved[t]
            o, f, i = ofi.unbind(1)
            tanh_c = fast_tanh(cell)
            ds = grad_states[t] + carry[:, :, 1:m + 1]
            ds[:, :, ::width] = 0  # the pads' state is the constant 0
            dc = torch.addcmul(carry_cell, ds * o, 1 - tanh_c * tanh_c)
            torch.mul(ds * tanh_c, o * (1 - o), out=da[:, 0])
            if t > 0:
                torch.mul(dc * saved[t - 1][2], f * (1 - f), out=da[:, 1])
            else:
                da[:, 1].zero_()
            torch.mul(dc * g, i * (1 - i), out=da[:, 2])
            torch.mul(dc * i, 1 - g * g, out=da[:, 3])
            carry_cell = dc * f
            flat_da = da.view(d, 4 * h, m)
            if in_weight is None:
                grad_inputs[t] = flat_da
            else:
                torch.bmm(in_weight_t, flat_da, out=grad_inputs[t])
                grad_in_weight.baddbmm_(flat_da, flat_in[t].transpose(1, 2))
            if grad_bias is not None:  # summed over the lines here, over the positions (masked) at the end
                grad_bias += flat_da.view(d, 4 * h, n, width).sum(dim=2) * bias_mask[t]
            if t > 0:  # the kernel read s_{t-1}
                previous = states[t - 1]
                carry.zero_()
                for j in range(k):
                    window = slice(1 + j - left, 1 + j - left + m)
                    grad_taps[j].baddbmm_(flat_da, previous[:, :, window].transpose(1, 2))
                    carry[:, :, window] += torch.bmm(taps_t[j], flat_da)
        grad_weight = torch.stack(grad_taps, dim=2).view(d, 4 * h, k * h)
        if grad_bias is not None:
            grad_bias = grad_bias.sum(dim=2).view_as(bias)
        return grad_inputs.view(t_steps, d, channels, n, width), grad_in_weight, grad_bias, None, grad_weight, None


def lstm_recurrence(inputs: torch.Tensor, weight: torch.Tensor, left: int, in_weight: torch.Tensor | None = None,
                    bias: torch.Tensor | None = None, bias_mask: torch.Tensor | None = None) -> torch.Tensor:
    """States ``(T, D, h, N, L + 1)`` of ``D`` LSTMs over ``T`` steps of ``N`` lines of ``L`` positions.

    ``inputs`` ``(T, D, C, N, L + 1)``: each line with a zero pad in front (the returned states have 0 there too).
    Each step's gates, ``[o, f, i, g]`` blocks of ``h`` per direction, are ``in_weight @ inputs_t + bias * bias_mask_t``
    (``in_weight`` ``(D, 4h, C)``, ``bias`` ``D 4h`` values, ``bias_mask`` ``(T, L + 1)``: where each step's lines
    get the bias, 0 at the pads), or the inputs themselves without ``in_weight`` (``C = 4h``),
    plus the state-to-state kernel ``weight`` ``(D, 4h, k h)``: ``k`` taps along the line, tap ``j`` seeing the
    previous state at position ``l + j - left`` (:func:`conv1d_kernel` turns a grouped ``Conv1d`` weight into this
    form)."""
    if inputs.dim() != 5:
        raise ValueError(f"inputs must be (T, D, C, N, L + 1), got {tuple(inputs.shape)}")
    d, channels = inputs.shape[1], inputs.shape[2]
    four_h = channels if in_weight is None else in_weight.shape[1]
    if four_h % 4 or weight.dim() != 3 or weight.shape[:2] != (d, four_h) or weight.shape[2] % (four_h // 4):
        raise ValueError(f"weight must be (D, 4h, k h) with D = {d}, 4h = {four_h}, got {tuple(weight.shape)}")
    if bias is not None and (in_weight is None or bias_mask is None):
        raise ValueError("a bias needs in_weight and bias_mask")
    dtype = inputs.dtype
    cast = (lambda w: None if w is None else w.to(dtype).contiguous())
    return _LSTMRecurrence.apply(inputs.contiguous(), cast(in_weight), cast(bias), cast(bias_mask), cast(weight),
                                 int(left))


def conv1d_kernel(weight: torch.Tensor, directions: int) -> torch.Tensor:
    """A ``Conv1d`` weight ``(D 4h, h, k)`` with ``groups=D`` as the ``(D, 4h, k h)`` kernel of
    :func:`lstm_recurrence` (taps in order, each a block of ``h``)."""
    out_channels, h, k = weight.shape
    return weight.view(directions, out_channels // directions, h, k).transpose(2, 3).reshape(
        directions, out_channels // directions, k * h)
