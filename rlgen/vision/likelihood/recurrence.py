"""The LSTM recurrence of the PixelRNN layers as one autograd function with a hand-written backward.

Row LSTM and Diagonal BiLSTM run the same recurrence over ``T`` steps (rows, or the columns of the skewed map), each
step a whole line of ``L`` positions in each of ``N`` images, for ``D`` independent directions::

    a_t = x_t + K * s_{t-1}          K: a 1-d convolution of k taps along the line, one per direction
    o, f, i = sigmoid(a_t[o, f, i]),  g = tanh(a_t[g]),  c_t = f c_{t-1} + i g,  s_t = o tanh(c_t)

Under autograd every step records a dozen small nodes, slicing the gates or a convolution's output costs a
zero-filled gradient per step, and oneDNN's convolutions are slow at these sizes; a 7-layer Diagonal BiLSTM on 64
MNIST images took 4 s a step. Here each step is one row of ``(D, channels, L N)`` positions (position-major), so
that each of the k taps of the kernel reads a contiguous slice of the previous state; the forward keeps each step's
gate activations and cells, and backpropagation through time runs by hand: per step a few element-wise ops and
three batched matrix products (the step's products, the inputs' and state's gradients, the weights' gradient,
accumulated). A step may compute only a range of positions (``active``): the Diagonal BiLSTM's skewed map is half
off the image, and computing only the diagonal's pixels halves its work.
"""

from __future__ import annotations

import torch


def fast_tanh(x: torch.Tensor) -> torch.Tensor:
    """``tanh(x) = 2 sigmoid(2x) - 1``: PyTorch's CPU tanh is not vectorised (6.9 ns an element on an AVX-512 core,
    sigmoid 0.4 ns), and the LSTM takes four tanh per step; the absolute error is within float rounding."""
    return torch.sigmoid(2 * x).mul_(2).sub_(1)


def _windows(line: torch.Tensor, s0: int, s1: int, n: int, left: int, k: int, pad: int) -> list[torch.Tensor]:
    """The ``k`` slices ``(D, channels, s1 - s0)`` of a step's row that ``k`` taps read for positions ``[s0, s1)``:
    tap ``j`` at ``p + (j - left) n`` (``line`` is padded by ``pad`` positions at each end)."""
    return [line[:, :, s0 + pad + (j - left) * n:s1 + pad + (j - left) * n] for j in range(k)]


def _stack(parts: list[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class _LSTMRecurrence(torch.autograd.Function):
    """The recurrence on a position-major layout: step ``t`` is ``(D, C, L N)`` (position ``l`` of all ``N`` lines
    side by side), so tap ``j`` of the kernel reads the previous state shifted by ``(j - left) N``, one contiguous
    slice, and a step that computes only the positions ``[lo, hi)`` of its lines (``active``) computes one contiguous
    slice too. The states are kept in ``(T, D, h, (L + 2) N)``, with ``N`` zeros at each end for the taps that
    reach past the line; positions a step does not compute stay 0 there.

    Each step's products are one batched matrix product: the step's inputs and the ``k`` windows of the previous
    state, stacked, times ``[in_weight | kernel]`` (one product with a long inner dimension runs faster than ``k + 1``
    short ones); the backward takes the transposed product for the inputs' and the state's gradients, and the
    product with the stack for the weights'. With ``in_weight``, the input-to-state product is taken step by step, so
    the ``(T, D, 4h, ...)`` gates of all steps never exist in memory: on a CPU this recurrence is bound by memory
    traffic."""

    @staticmethod
    def forward(ctx, inputs: torch.Tensor, in_weight: torch.Tensor | None,  # type: ignore[override]
                bias: torch.Tensor | None, weight: torch.Tensor, left: int, active: list[tuple[int, int]],
                in_left: int):
        t_steps, d, _, length, n = inputs.shape
        four_h = weight.shape[1]
        h = four_h // 4
        k = weight.shape[2] // h
        m = length * n
        source, pad, k_in = _input_rows(inputs, in_weight, in_left)
        both = None if in_weight is None else torch.cat([in_weight, weight], dim=2)  # (D, 4h, k_in C + k h)
        bias = None if bias is None else bias.view(d, four_h, 1)
        states = inputs.new_zeros(t_steps, d, h, m + 2 * n)  # position p of a step at p + n
        cells = inputs.new_zeros(t_steps, d, h, m)
        saved: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # o, f, i; g; tanh(c) of each step
        for t, (lo, hi) in enumerate(active):
            s0, s1 = lo * n, hi * n
            xs = _windows(source[t], s0, s1, n, in_left, k_in, pad)
            if t == 0:  # the previous state is 0
                a = xs[0].clone() if in_weight is None else torch.bmm(in_weight, _stack(xs))
            elif in_weight is None:
                a = torch.baddbmm(xs[0], weight, _stack(_windows(states[t - 1], s0, s1, n, left, k, n)))
            else:
                a = torch.bmm(both, torch.cat([*xs, *_windows(states[t - 1], s0, s1, n, left, k, n)], dim=1))
            if bias is not None:
                a.add_(bias)
            a = a.view(d, 4, h, s1 - s0)
            ofi = torch.sigmoid(a[:, :3])
            g = fast_tanh(a[:, 3])
            cell = cells[t, :, :, s0:s1]
            if t > 0:
                torch.mul(ofi[:, 1], cells[t - 1, :, :, s0:s1], out=cell)
                cell.addcmul_(ofi[:, 2], g)
            else:
                torch.mul(ofi[:, 2], g, out=cell)
            tanh_c = fast_tanh(cell)
            torch.mul(ofi[:, 0], tanh_c, out=states[t, :, :, n + s0:n + s1])
            saved.append((ofi, g, tanh_c))
        # the backward needs the products' weights [in_weight | kernel] (or the kernel alone) and how they were laid out
        ctx.save_for_backward(source, weight if both is None else both, bias, states, cells)
        ctx.saved, ctx.shape = saved, inputs.shape
        ctx.layout = (left, active, in_left, pad, k_in, in_weight is not None)
        return states[:, :, :, n:n + m].view(t_steps, d, h, length, n)

    @staticmethod
    def backward(ctx, grad_states: torch.Tensor):  # type: ignore[override]
        source, both, bias, states, cells = ctx.saved_tensors
        saved, (left, active, in_left, pad, k_in, with_in) = ctx.saved, ctx.layout
        t_steps, d, channels, length, n = ctx.shape
        h = both.shape[1] // 4
        first = k_in * channels if with_in else 0  # where the state's part starts in the stack
        k = (both.shape[2] - first) // h
        m = length * n
        grad_states = grad_states.reshape(t_steps, d, h, m)
        # the inputs' gradient, laid out as `source`: 0 where no step read an input (zeroed below, or from the start
        # where taps overlap and add up)
        grad_source = grad_states.new_empty(source.shape) if pad == 0 else grad_states.new_zeros(source.shape)
        grad_bias = None if bias is None else grad_states.new_zeros(d, 4 * h, 1)
        both_t = both.transpose(1, 2).contiguous()
        grad_both = torch.zeros_like(both)

        def add_input_grads(t: int, s0: int, s1: int, grad: torch.Tensor) -> None:
            if pad == 0:  # one tap at the position itself
                grad_source[t, :, :, :s0].zero_()
                grad_source[t, :, :, s1:].zero_()
                grad_source[t, :, :, s0:s1] = grad
                return
            for j, window in enumerate(_windows(grad_source[t], s0, s1, n, in_left, k_in, pad)):
                window += grad[:, j * channels:(j + 1) * channels]

        carry = grad_states.new_zeros(d, h, m + 2 * n)  # dL/ds_t through step t + 1's kernel, positioned as states
        carry_cell = grad_states.new_zeros(d, h, m)  # dL/dc_t through step t + 1 (0 where it did not compute)
        for t in range(t_steps - 1, -1, -1):
            lo, hi = active[t]
            s0, s1 = lo * n, hi * n
            ofi, g, tanh_c = saved[t]
            o, f, i = ofi.unbind(1)
            ds = grad_states[t, :, :, s0:s1] + carry[:, :, n + s0:n + s1]
            dc = torch.ops.aten.tanh_backward(ds * o, tanh_c).add_(carry_cell[:, :, s0:s1])
            # the gates' gradients, in the layout of the gates: first through the products, then (in place, one
            # fused pass each) through the sigmoids and the tanh
            da = grad_states.new_empty(d, 4, h, s1 - s0)
            torch.mul(ds, tanh_c, out=da[:, 0])
            if t > 0:
                torch.mul(dc, cells[t - 1, :, :, s0:s1], out=da[:, 1])
            else:
                da[:, 1].zero_()
            torch.mul(dc, g, out=da[:, 2])
            torch.mul(dc, i, out=da[:, 3])
            torch.ops.aten.sigmoid_backward.grad_input(da[:, :3], ofi, grad_input=da[:, :3])
            torch.ops.aten.tanh_backward.grad_input(da[:, 3], g, grad_input=da[:, 3])
            flat_da = da.view(d, 4 * h, s1 - s0)
            if grad_bias is not None:
                grad_bias += flat_da.sum(dim=2, keepdim=True)
            xs = _windows(source[t], s0, s1, n, in_left, k_in, pad)
            if t == 0:  # the products saw the inputs alone
                if with_in:
                    grad_both[:, :, :first].baddbmm_(flat_da, _stack(xs).transpose(1, 2))
                    add_input_grads(t, s0, s1, torch.bmm(both_t[:, :first], flat_da))
                else:
                    add_input_grads(t, s0, s1, flat_da)
                continue
            p0, p1 = active[t - 1][0] * n, active[t - 1][1] * n
            # step t - 1 reads the cell's gradient on its own range: 0 where step t did not compute
            carry_cell[:, :, p0:p1].zero_()
            torch.mul(dc, f, out=carry_cell[:, :, s0:s1])
            windows = _windows(states[t - 1], s0, s1, n, left, k, n)
            grad_both.baddbmm_(flat_da, torch.cat([*xs, *windows] if with_in else windows, dim=1).transpose(1, 2))
            back = torch.bmm(both_t, flat_da)  # (D, k_in C + k h, positions) or (D, k h, positions)
            add_input_grads(t, s0, s1, back[:, :first] if with_in else flat_da)
            # zero what step t - 1 reads of the carry and what the taps add to, then add each tap's part
            carry[:, :, min(n + p0, s0 + n - left * n):max(n + p1, s1 + n + (k - 1 - left) * n)].zero_()
            for j, window in enumerate(_windows(carry, s0, s1, n, left, k, n)):
                window += back[:, first + j * h:first + (j + 1) * h]
        grad_in_weight = grad_both[:, :, :first] if with_in else None
        grad_weight = grad_both[:, :, first:] if with_in else grad_both
        if grad_bias is not None:
            grad_bias = grad_bias.view(-1)
        grad_inputs = grad_source[..., pad:pad + m].reshape(t_steps, d, channels, length, n)
        return grad_inputs, grad_in_weight, grad_bias, grad_weight, None, None, None


def lstm_recurrence(inputs: torch.Tensor, weight: torch.Tensor, left: int, in_weight: torch.Tensor | None = None,
                    bias: torch.Tensor | None = None, active: list[tuple[int, int]] | None = None,
                    in_left: int = 0) -> torch.Tensor:
    """States ``(T, D, h, L, N)`` of ``D`` LSTMs over ``T`` steps of ``N`` lines of ``L`` positions.

    ``inputs`` ``(T, D, C, L, N)``. Each step's gates, ``[o, f, i, g]`` blocks of ``h`` per direction, are
    ``in_weight * inputs_t + bias`` (``in_weight`` ``(D, 4h, k_in C)``: a 1-d convolution of ``k_in`` taps along the
    line over the step's own inputs, tap ``j`` at ``l + j - in_left``; ``bias`` ``D 4h`` values), or the inputs
    themselves without ``in_weight`` (``C = 4h``), plus the state-to-state kernel ``weight`` ``(D, 4h, k h)``: ``k``
    taps along the line, tap ``j`` seeing the previous state at position ``l + j - left`` (0 past the line's ends;
    :func:`conv1d_kernel` turns a grouped ``Conv1d`` weight into either form).

    ``active``: for each step, the positions ``[lo, hi)`` of its lines that it computes (all when None). The others
    are not computed: their state is 0 and gets no gradient, which is exact where what the caller reads depends on
    none of them but through a 0 (the Diagonal BiLSTM's skewed map: positions off the image)."""
    if inputs.dim() != 5:
        raise ValueError(f"inputs must be (T, D, C, L, N), got {tuple(inputs.shape)}")
    t_steps, d, channels, length = inputs.shape[:4]
    four_h = channels if in_weight is None else in_weight.shape[1]
    if four_h % 4 or weight.dim() != 3 or weight.shape[:2] != (d, four_h) or weight.shape[2] % (four_h // 4):
        raise ValueError(f"weight must be (D, 4h, k h) with D = {d}, 4h = {four_h}, got {tuple(weight.shape)}")
    if not 0 <= left <= 1 or weight.shape[2] // (four_h // 4) - 1 - left > 1:
        raise ValueError(f"the kernel may reach one position past each end of the line: left {left} and "
                         f"{weight.shape[2] // (four_h // 4)} taps reach further")
    if in_weight is not None and (in_weight.shape[2] % channels or not 0 <= in_left <= 1
                                  or in_weight.shape[2] // channels - 1 - in_left > 1):
        raise ValueError(f"in_weight must be (D, 4h, k_in C) with C = {channels}, its taps reaching one position past "
                         f"each end at most, got {tuple(in_weight.shape)} with in_left {in_left}")
    if bias is not None and in_weight is None:
        raise ValueError("a bias needs in_weight")
    active = [(0, length)] * t_steps if active is None else [(int(lo), int(hi)) for lo, hi in active]
    if len(active) != t_steps or any(not 0 <= lo < hi <= length for lo, hi in active):
        raise ValueError(f"active must give each of the {t_steps} steps a range 0 <= lo < hi <= {length}")
    dtype = inputs.dtype
    cast = (lambda w: None if w is None else w.to(dtype).contiguous())
    return _LSTMRecurrence.apply(inputs.contiguous(), cast(in_weight), cast(bias), cast(weight), int(left), active,
                                 int(in_left))


def _input_rows(inputs: torch.Tensor, in_weight: torch.Tensor | None,
                in_left: int) -> tuple[torch.Tensor, int, int]:
    """The inputs as rows ``(T, D, C, L N)``, padded by ``N`` zeros at each end where the input product has taps
    along the line (a copy), with the pad and the number of taps."""
    t_steps, d, channels, length, n = inputs.shape
    flat = inputs.view(t_steps, d, channels, length * n)
    k_in = 1 if in_weight is None else in_weight.shape[2] // channels
    if k_in == 1 and in_left == 0:
        return flat, 0, 1
    source = inputs.new_zeros(t_steps, d, channels, (length + 2) * n)
    source[..., n:n + length * n] = flat
    return source, n, k_in


def conv1d_kernel(weight: torch.Tensor, directions: int) -> torch.Tensor:
    """A ``Conv1d`` weight ``(D 4h, h, k)`` with ``groups=D`` as the ``(D, 4h, k h)`` kernel of
    :func:`lstm_recurrence` (taps in order, each a block of ``h``)."""
    out_channels, h, k = weight.shape
    return weight.view(directions, out_channels // directions, h, k).transpose(2, 3).reshape(
        directions, out_channels // directions, k * h)
