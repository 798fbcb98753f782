"""A weighted sum of reward sources on the one relabel hook: ``r = sum_i w_i r_i`` for every transition.

Each source sees the same rollout (:class:`~rlgen.common.reward_relabel.TransitionBatch`), learns from it as it
would alone, and returns its reward; the sum goes to the RL algorithm through
:class:`~rlgen.common.reward_relabel.RewardRelabelCallback` like any single source. GAIL with VIME's exploration
bonus, for example::

    gail = GAIL(expert_obs, expert_actions, env.observation_space, env.action_space)
    vime = VIME(model, eta=1.0, extrinsic=False)         # the normalised information gain alone
    reward = RewardSum({"gail": (1.0, gail), "vime": (1e-4, vime)})
    model.learn(1_000_000, callback=RewardRelabelCallback(reward))

Metrics: each source's own, and ``reward/<name>_mean``, the mean weighted contribution of each source.
Checkpoints hold each source's state under its name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from rlgen.common.reward_relabel import RewardSource, TransitionBatch


class RewardSum(RewardSource):
    """``sum_i weight_i * source_i(batch)`` over named ``(weight, source)`` pairs, in their given order (the order
    in which the sources learn from each rollout)."""

    def __init__(self, sources: Mapping[str, tuple[float, RewardSource]]):
        if not sources:
            raise ValueError("RewardSum needs at least one reward source")
        for name, (weight, source) in sources.items():
            if not math.isfinite(float(weight)):
                raise ValueError(f"the weight of reward source {name!r} must be finite, got {weight}")
            if not isinstance(source, RewardSource):
                raise TypeError(f"{name!r} is a {type(source).__name__}, not a RewardSource")
        self.sources = {name: (float(weight), source) for name, (weight, source) in sources.items()}

    @property
    def console_keys(self) -> tuple[str, ...]:
        return tuple(key for _, source in self.sources.values() for key in source.console_keys)

    def relabel(self, batch: TransitionBatch) -> tuple[np.ndarray, dict[str, float]]:
        total = np.zeros(batch.shape, dtype=np.float64)
        metrics: dict[str, float] = {}
        for name, (weight, source) in self.sources.items():
            rewards, source_metrics = source.relabel(batch)
            rewards = np.asarray(rewards, dtype=np.float64)
            if rewards.shape != batch.shape:
                raise ValueError(f"reward source {name!r} returned shape {rewards.shape}, expected {batch.shape}")
            total += weight * rewards
            metrics.update(source_metrics)
            metrics[f"reward/{name}_mean"] = float(weight * rewards.mean())
        return total.astype(np.float32), metrics

    def state_dict(self) -> dict[str, Any]:
        return {name: source.state_dict() for name, (_, source) in self.sources.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.sources) - set(state)
        if missing:
            raise KeyError(f"the checkpoint has no state for reward source(s) {', '.join(sorted(missing))}")
        for name, (_, source) in self.sources.items():
            source.load_state_dict(state[name])
