"""Historical averaging (Salimans et al. 2016, section 3.3).

Each player's cost gets the term ``||theta - (1/t) sum_{i=1..t} theta[i]||^2``, where ``theta[i]`` are its
parameters after each of its past updates (and at initialisation). :class:`HistoricalAverage` keeps that running
mean in buffers (so it is checkpointed with the model); call :meth:`penalty` in the loss and :meth:`update` after the
optimiser step. The paper gives no weight; the CLI's ``--historical-averaging W`` multiplies the penalty by ``W``.
The original improved-gan code does not implement this technique (it only keeps an exponential average of the
classifier's weights for testing), so this follows the paper.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class HistoricalAverage(nn.Module):
    """The running mean of a module's parameters (or of a list of parameters). The parameters are referenced, not
    owned, so they are not registered twice; a module is asked for its parameters at each use, so the reference
    survives ``.to(device)`` however PyTorch moves parameters."""

    def __init__(self, source: nn.Module | Iterable[nn.Parameter]):
        super().__init__()
        if isinstance(source, nn.Module):
            object.__setattr__(self, "_source", source)  # a plain attribute: not a submodule
            params = list(source.parameters())
        else:
            params = list(source)
            object.__setattr__(self, "_source", params)
        for i, p in enumerate(params):
            self.register_buffer(f"mean_{i}", p.detach().clone())
        self.register_buffer("count", torch.ones((), dtype=torch.long))
        self._n = len(params)

    @property
    def _params(self) -> list[nn.Parameter]:
        return list(self._source.parameters()) if isinstance(self._source, nn.Module) else self._source

    def _means(self) -> list[torch.Tensor]:
        return [getattr(self, f"mean_{i}") for i in range(self._n)]

    def penalty(self) -> torch.Tensor:
        """``sum over parameters of ||theta - mean||^2`` (differentiable in theta)."""
        return sum((p - m).square().sum() for p, m in zip(self._params, self._means()))  # type: ignore[return-value]

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current parameters into the mean: ``mean += (theta - mean) / (t + 1)``."""
        self.count += 1
        for p, m in zip(self._params, self._means()):
            m.add_((p.detach() - m) / self.count)
