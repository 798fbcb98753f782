"""One mechanism for learned rewards on SB3's on-policy algorithms (PPO, TRPO, A2C, ...).

SB3 computes returns and advantages *before* ``on_rollout_end``. :class:`RewardRelabelCallback` records every
transition of the rollout as it is collected, hands the whole rollout to a :class:`RewardSource` (VIME's
information gain, GAIL's discriminator), writes the source's rewards into the rollout buffer and recomputes
returns and advantages. Reward learning stays separate from the RL algorithm that consumes the reward.

With a :class:`~rlgen.common.normalization.ReturnScale` the callback also divides the rollout's rewards by the
running standard deviation of the discounted return, so that the critic learns returns of unit scale; runs without
a learned reward use :class:`EnvReward` for that.

Next observations at episode ends come from ``infos[i]["terminal_observation"]`` (SB3's VecEnvs have already
reset the env, so ``new_obs`` holds the *next* episode's first observation there).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from rlgen.common.normalization import ReturnScale


@dataclass
class TransitionBatch:
    """A rollout's transitions, each array shaped ``(n_steps, n_envs, ...)``.

    ``actions`` are the actions the env executed (clipped to its bounds); ``rewards`` are the env's own
    rewards; ``dones`` marks the last step of an episode and ``truncated`` those ended by a time limit;
    ``log_probs`` are the policy's ``log pi(a|s)`` of the actions it sampled (before clipping), when known.
    """

    obs: np.ndarray
    actions: np.ndarray
    next_obs: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    truncated: np.ndarray
    log_probs: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.rewards.shape  # type: ignore[return-value]

    def flat(self) -> TransitionBatch:
        """The same transitions with the step and env axes merged into one batch axis."""
        def f(x: np.ndarray | None) -> np.ndarray | None:
            return None if x is None else x.reshape(-1, *x.shape[2:])
        return TransitionBatch(*(f(getattr(self, field.name)) for field in fields(self)))


class RewardSource(ABC):
    """Something that learns from rollouts and says what reward each transition should get."""

    #: metrics (keys of :meth:`relabel`'s dict) printed on the console at each log line
    console_keys: tuple[str, ...] = ()

    @abstractmethod
    def relabel(self, batch: TransitionBatch) -> tuple[np.ndarray, dict[str, float]]:
        """Return the reward to train on for every transition of ``batch`` (shape ``batch.shape``) and scalar
        metrics to log. The source may learn from the batch (VIME fits its dynamics model, GAIL its discriminator);
        the order of learning and rewarding is the source's choice."""

    def state_dict(self) -> dict[str, Any]:
        """Tensors/arrays/numbers for checkpoints (loaded with ``torch.load(weights_only=True)``)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state


class EnvReward(RewardSource):
    """The env's own reward, unchanged: for runs that use the callback only to scale returns."""

    def relabel(self, batch: TransitionBatch) -> tuple[np.ndarray, dict[str, float]]:
        return batch.rewards, {}


class RewardRelabelCallback(BaseCallback):
    """Replace the rewards of each rollout with those of ``source`` before the policy update.

    Works for any :class:`~stable_baselines3.common.on_policy_algorithm.OnPolicyAlgorithm` with a ``Box`` or
    ``Discrete`` action space and array observations. The timeout bootstrap ``gamma * V(terminal_obs)`` that SB3
    adds to the buffer's rewards is kept: the buffer gets ``buffer_reward + (new_reward - env_reward)``, or with
    ``return_scale`` ``buffer_reward - env_reward + new_reward / std`` (the bootstrap is already in the critic's
    scaled units).
    """

    def __init__(self, source: RewardSource, return_scale: ReturnScale | None = None, verbose: int = 0):
        super().__init__(verbose)
        self.source = source
        self.return_scale = return_scale
        self.last_batch: TransitionBatch | None = None  # the latest rollout's transitions, as the source saw them
        self._t = 0

    def _init_callback(self) -> None:
        if not isinstance(self.model, OnPolicyAlgorithm):
            raise TypeError(f"RewardRelabelCallback needs an on-policy algorithm, not {type(self.model).__name__}")
        if isinstance(self.model.observation_space, spaces.Dict):
            raise TypeError("RewardRelabelCallback supports array observations, not Dict observation spaces")
        n, e = self.model.n_steps, self.model.n_envs
        obs_shape = self.model.observation_space.shape
        act_shape = self.model.action_space.shape or ()
        self._obs = np.zeros((n, e, *obs_shape), dtype=np.float32)
        self._next_obs = np.zeros_like(self._obs)
        self._actions = np.zeros((n, e, *act_shape), dtype=np.float32)
        self._rewards = np.zeros((n, e), dtype=np.float32)
        self._dones = np.zeros((n, e), dtype=bool)
        self._truncated = np.zeros((n, e), dtype=bool)
        self._log_probs = np.zeros((n, e), dtype=np.float32)

    def _on_rollout_start(self) -> None:
        self._t = 0

    def _on_step(self) -> bool:
        t = self._t
        dones = self.locals["dones"]
        infos = self.locals["infos"]
        # At on_step, model._last_obs is still the observation the action was taken in.
        self._obs[t] = self.model._last_obs
        next_obs = np.array(self.locals["new_obs"], dtype=np.float32, copy=True)
        for i in np.flatnonzero(dones):  # only at episode ends (a few per rollout)
            terminal = infos[i].get("terminal_observation")
            if terminal is not None:
                next_obs[i] = terminal
            self._truncated[t, i] = bool(infos[i].get("TimeLimit.truncated", False))
        self._truncated[t, ~dones] = False
        self._next_obs[t] = next_obs
        self._actions[t] = np.asarray(self.locals["clipped_actions"]).reshape(self._actions[t].shape)
        # Copy: SB3 adds the timeout bootstrap to this array in place right after on_step.
        self._rewards[t] = self.locals["rewards"]
        self._dones[t] = dones
        self._log_probs[t] = self.locals["log_probs"].detach().cpu().numpy().reshape(-1)
        self._t += 1
        return True

    def _on_rollout_end(self) -> None:
        if self._t != self.model.n_steps:  # rollout cut short by another callback: nothing to relabel
            return
        batch = TransitionBatch(self._obs, self._actions, self._next_obs, self._rewards, self._dones, self._truncated,
                                self._log_probs)
        self.last_batch = batch
        new_rewards, metrics = self.source.relabel(batch)
        new_rewards = np.asarray(new_rewards, dtype=np.float32)
        if new_rewards.shape != batch.shape:
            raise ValueError(f"{type(self.source).__name__}.relabel returned shape {new_rewards.shape}, "
                             f"expected {batch.shape}")
        if self.return_scale is not None:
            new_rewards = self.return_scale(new_rewards, self._dones)
            metrics = {**metrics, "rollout/return_std": self.return_scale.std}
        buffer = self.model.rollout_buffer
        buffer.rewards += new_rewards - self._rewards
        buffer.compute_returns_and_advantage(last_values=self.locals["values"], dones=self.locals["dones"])
        for key, value in metrics.items():
            self.logger.record(key, value)
