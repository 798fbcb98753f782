"""Unrolled GAN (Metz et al. 2017, "Unrolled Generative Adversarial Networks").

The generator is trained against the discriminator it *would* face after ``k`` more discriminator updates:
``theta_D^{k+1} = theta_D^k - lr * d L_D(theta_D^k, G) / d theta_D^k`` (the paper's eq. 4 with the discriminator loss
written as a cost), and the generator loss is evaluated with ``theta_D^k``. With ``second_order=True`` the gradient
flows through the unrolled updates (the paper's full method: the generator sees how the discriminator would react to
it); with ``False`` only through the final evaluation (the cheaper first-order approximation the paper discusses).
The real discriminator is left untouched: the unrolled copies are separate tensors evaluated with
:func:`torch.func.functional_call`, and batch-norm running statistics are updated on clones.

Deviation: the paper's experiments unroll Adam; this unrolls plain gradient steps of size ``lr`` (the paper's
formulation). The unrolled steps reuse the current real and fake batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call

ParamDict = dict[str, torch.Tensor]


def unrolled_parameters(discriminator: nn.Module, loss_fn: Callable[[Callable[..., torch.Tensor]], torch.Tensor],
                        steps: int, lr: float, second_order: bool = True) -> tuple[ParamDict, ParamDict]:
    """Parameters (and buffer copies) of ``discriminator`` after ``steps`` gradient steps on ``loss_fn``.

    ``loss_fn(d)`` computes the discriminator loss, calling ``d(x, ...)`` in place of the discriminator; it must build
    its fakes without detaching them from the generator when ``second_order``. Returns ``(params, buffers)`` to pass
    to :func:`functional_call` (see :func:`call_with`)."""
    params = {k: p.detach().requires_grad_(True) for k, p in discriminator.named_parameters()}
    buffers = {k: b.detach().clone() for k, b in discriminator.named_buffers()}
    for _ in range(steps):
        def d(*args: torch.Tensor, _params: ParamDict = params, **kwargs: torch.Tensor) -> torch.Tensor:
            return functional_call(discriminator, (_params, buffers), args, kwargs)

        loss = loss_fn(d)
        names = list(params)
        grads = torch.autograd.grad(loss, [params[k] for k in names], create_graph=second_order, allow_unused=True)
        params = {k: params[k] - lr * (g if g is not None else torch.zeros_like(params[k]))
                  for k, g in zip(names, grads)}
        if not second_order:
            params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    return params, buffers


def call_with(discriminator: nn.Module, params: ParamDict, buffers: ParamDict) -> Callable[..., torch.Tensor]:
    """``discriminator`` as a function of its inputs, with the given (unrolled) parameters."""
    def d(*args: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        return functional_call(discriminator, (params, buffers), args, kwargs)
    return d
