"""Input normalisation: for the GAIL discriminator, for imitation policies and for RL policies.

* :class:`RunningNorm`: mean/variance over every batch it is shown (Chan et al.'s parallel update), as the
  original GAIL code's ``Standardizer``: the discriminator's is started on the expert data and then updated with
  each training batch (policy and expert samples).
* :class:`ObsNormExtractor`: an SB3 features extractor that standardises observations with *fixed* statistics
  (the expert data's, set when the policy is built) and clips them to ``[-clip, clip]``. The statistics are
  buffers of the policy, so they are saved inside the model zip and rollouts/evaluation need no wrapper.
* :class:`RunningObsNormExtractor` with :class:`ObsNormCallback`: the same with *running* statistics of every
  rollout the policy has collected (what SB3's ``VecNormalize`` does for observations), for RL from scratch.
  Unlike ``VecNormalize`` the env, the rollout buffer and reward sources such as VIME's dynamics model keep the
  raw observations, and the statistics travel inside the model zip.
* :class:`ReturnScale`: divides rewards by the running standard deviation of the discounted return (what
  ``VecNormalize(norm_reward=True)`` does), applied to each whole rollout by
  :class:`~rlgen.common.reward_relabel.RewardRelabelCallback`. A learned critic then sees returns of unit scale
  whatever the reward's: VIME's bonus of 1e-4 per step, a sparse reward of 1 per step over 500 steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.preprocessing import get_flattened_obs_dim
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

MIN_STD = 1e-3  # a feature that is constant in the expert data is not blown up to +-clip by float noise


class RunningNorm(nn.Module):
    """Standardise ``(B, dim)`` inputs with a running mean and variance (buffers, so they are checkpointed)."""

    def __init__(self, dim: int, eps: float = 1e-8):
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.zeros(()))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, self.mean.shape[0]).to(self.mean)
        n = x.shape[0]
        if n == 0:
            return
        batch_mean = x.mean(0)
        batch_var = (x - batch_mean).square().mean(0)  # 6x faster than x.var(0) on a CPU (a column reduction)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.var.copy_((self.var * self.count + batch_var * n + delta.pow(2) * self.count * n / total) / total)
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.count <= 0:
            return x
        return (x - self.mean) / torch.sqrt(self.var + self.eps).clamp_min(MIN_STD)


class ObsNormExtractor(BaseFeaturesExtractor):
    """Flatten and standardise observations with fixed ``mean``/``std`` (e.g. the expert data's), then clip.

    Used by SB3 policies through ``policy_kwargs={"features_extractor_class": ObsNormExtractor,
    "features_extractor_kwargs": {"mean": [...], "std": [...]}}``.
    """

    def __init__(self, observation_space: spaces.Space, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, clip: float = 10.0):
        dim = get_flattened_obs_dim(observation_space)
        super().__init__(observation_space, dim)
        mean_t = torch.zeros(dim) if mean is None else torch.as_tensor(np.asarray(mean, np.float32).reshape(-1))
        std_t = torch.ones(dim) if std is None else torch.as_tensor(np.asarray(std, np.float32).reshape(-1))
        if mean_t.shape != (dim,) or std_t.shape != (dim,):
            raise ValueError(f"mean/std must have {dim} entries, got {tuple(mean_t.shape)} and {tuple(std_t.shape)}")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t.clamp_min(MIN_STD))
        self.clip = float(clip)
        self.flatten = nn.Flatten()

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = self.flatten(observations.float())
        return ((x - self.mean) / self.std).clamp(-self.clip, self.clip)


class RunningObsNormExtractor(BaseFeaturesExtractor):
    """Flatten and standardise observations with the running statistics of :class:`RunningNorm`, then clip.

    The statistics change only through :class:`ObsNormCallback`, between a policy update and the next rollout, so
    that the log-probabilities stored during a rollout and those recomputed in the update see the same inputs.
    Until the first update it passes observations through unchanged, unless it starts from given statistics
    (``mean``, ``var`` and the ``count`` of observations they summarise, e.g. the expert data's for GAIL, as the
    original code starts its policy's normaliser).
    """

    def __init__(self, observation_space: spaces.Space, clip: float = 10.0, mean: Sequence[float] | None = None,
                 var: Sequence[float] | None = None, count: float = 0.0):
        dim = get_flattened_obs_dim(observation_space)
        super().__init__(observation_space, dim)
        self.norm = RunningNorm(dim)
        if count > 0:
            if mean is None or var is None or len(mean) != dim or len(var) != dim:
                raise ValueError(f"starting statistics need mean and var of {dim} entries each")
            self.norm.mean.copy_(torch.as_tensor(np.asarray(mean, np.float32)))
            self.norm.var.copy_(torch.as_tensor(np.asarray(var, np.float32)))
            self.norm.count.fill_(float(count))
        self.clip = float(clip)
        self.flatten = nn.Flatten()

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = self.flatten(observations.float())
        if self.norm.count <= 0:
            return x
        return self.norm(x).clamp(-self.clip, self.clip)


class ObsNormCallback(BaseCallback):
    """Feeds each rollout's observations to the policy's :class:`RunningObsNormExtractor` statistics.

    The rollout is copied at ``on_rollout_end`` and the statistics are updated at the next ``on_rollout_start``:
    after the policy update that uses the rollout, never between collecting it and training on it. (Put this
    callback before the checkpointing one, which saves at rollout starts too, so that a checkpoint holds the
    statistics of every rollout its policy was trained on.)
    """

    def __init__(self) -> None:
        super().__init__()
        self._pending: np.ndarray | None = None

    def _norms(self) -> list[RunningNorm]:
        return [m.norm for m in self.model.policy.modules() if isinstance(m, RunningObsNormExtractor)]

    def _on_rollout_start(self) -> None:
        if self._pending is not None:
            for norm in self._norms():
                norm.update(torch.as_tensor(self._pending))
            self._pending = None

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self._norms():
            obs = self.model.rollout_buffer.observations
            self._pending = obs.reshape(-1, int(np.prod(obs.shape[2:]))).copy()


class ReturnScale:
    """Running standard deviation of the discounted return ``R_t = gamma * R_{t-1} + r_t`` (reset at episode ends),
    by which rewards are divided, as in SB3's ``VecNormalize``; the mean is not subtracted, so the sign of every
    reward and the ordering of returns are kept.

    Unlike ``VecNormalize`` a whole rollout is scaled by one factor, computed after the rollout's returns have
    been added to the statistics: every transition of an update sees the same scale.
    """

    def __init__(self, gamma: float, n_envs: int, eps: float = 1e-8):
        self.gamma = float(gamma)
        self.eps = eps
        self.returns = np.zeros(n_envs, dtype=np.float64)  # each env's running discounted return
        self.stats = RunningMeanStd(epsilon=0.0)  # VecNormalize's statistics, without its prior pseudo-count

    @property
    def std(self) -> float:
        return float(np.sqrt(self.stats.var + self.eps))

    @property
    def count(self) -> float:
        return float(self.stats.count)

    def __call__(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """``rewards`` and ``dones`` of one rollout, shaped ``(n_steps, n_envs)``: update the statistics with the
        rollout's discounted returns and return the rewards divided by their standard deviation."""
        returns = np.empty(rewards.shape, dtype=np.float64)
        for t in range(rewards.shape[0]):  # a recurrence over time, vectorised over the envs
            self.returns = self.gamma * self.returns + rewards[t]
            returns[t] = self.returns
            self.returns[dones[t]] = 0.0
        self.stats.update(returns.ravel())
        return (rewards / self.std).astype(np.float32)

    def state_dict(self) -> dict[str, float]:
        """The statistics, as floats (loads with ``torch.load(weights_only=True)``)."""
        return {"mean": float(self.stats.mean), "var": float(self.stats.var), "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore the statistics; the running returns restart at 0, as the envs of a resumed run do."""
        self.stats.mean = np.float64(state["mean"])
        self.stats.var = np.float64(state["var"])
        self.stats.count = float(state["count"])
        self.returns[:] = 0.0


OBS_NORM_EXTRACTOR = f"{ObsNormExtractor.__module__}:{ObsNormExtractor.__name__}"
RUNNING_OBS_NORM_EXTRACTOR = f"{RunningObsNormExtractor.__module__}:{RunningObsNormExtractor.__name__}"


def obs_norm_policy_kwargs(obs: np.ndarray, running: bool = False) -> dict[str, object]:
    """``policy_kwargs`` entries (JSON-safe: the class by import path, statistics as lists) that make an SB3
    policy standardise its observations with the statistics of ``obs``: fixed (:class:`ObsNormExtractor`), or
    with ``running=True`` as the start of running statistics that :class:`ObsNormCallback` goes on updating with
    every rollout (:class:`RunningObsNormExtractor`)."""
    flat = np.asarray(obs, dtype=np.float64).reshape(len(obs), -1)
    mean = [float(v) for v in flat.mean(0)]
    if running:
        return {"features_extractor_class": RUNNING_OBS_NORM_EXTRACTOR,
                "features_extractor_kwargs": {"mean": mean, "var": [float(v) for v in flat.var(0)],
                                              "count": float(len(flat))}}
    return {"features_extractor_class": OBS_NORM_EXTRACTOR,
            "features_extractor_kwargs": {"mean": mean, "std": [float(v) for v in flat.std(0)]}}
