"""A learned reward for SB3's off-policy algorithms (SAC, TD3): relabel each replay minibatch when it is sampled.

An on-policy algorithm consumes each rollout once, so :class:`~rlgen.common.reward_relabel.RewardRelabelCallback`
rewrites the rollout's rewards before the update. An off-policy one samples old transitions again and again, and
their reward must be the *current* one's (the discriminator has moved on since they were collected), so here the
replay buffer keeps the env's rewards and :class:`RelabeledReplayBuffer` replaces them in every minibatch it
samples, while :class:`ReplayRewardCallback` trains the reward on the buffer between env steps. This is GAIL with
an off-policy generator (Kostrikov et al. 2019, "Discriminator-Actor-Critic").

Absorbing states (a reward source whose ``absorbing`` is true, DAC's section 4.2): a terminated episode goes on in
an absorbing state forever, whose reward the source learns like any other. Its value, ``r_abs / (1 - gamma)`` for a
policy that has no say there, is added to the reward of every terminal transition when it is sampled
(``gamma r_abs / (1 - gamma)``; the transition stays terminal), which is what DAC's self-looping absorbing
transitions teach its critic, without storing them. The discriminator sees the absorbing state as often as DAC's
buffer holds it: one draw per terminated episode. Its reward counts as no more than the minibatch's worst pair's:
the expert (on the locomotion tasks) never enters it, yet on Humanoid D, certain of every policy pair, scored it
above the policy's average pair and falling paid (benchmarks/README.md); no better than the worst pair, an episode's
end never beats staying in the least expert-like state the policy has seen. For SAC, whose soft reward adds
``-alpha log pi`` at every step, the absorbing state's steps count ``alpha`` times the target entropy too (what SAC's
temperature tuning holds the policy's entropy to), so that falling neither gains nor loses the entropy term. Without
absorbing states, ``-log(1 - D) >= 0`` rewards make an early termination only lose reward, the right sign on
locomotion tasks whose expert never falls.

With :meth:`RelabeledReplayBuffer.share_expert_transitions` (``rlgen gail --expert-replay SHARE``) a share of every
minibatch is the expert's own transitions, rewarded by the discriminator like the policy's: the critic then learns
the value of the expert's actions in the expert's states, and the actor is trained on those states too, as SQIL and
RLPD do with expert data in the off-policy buffer.

The buffer stores SB3's *scaled* actions (in ``[-1, 1]`` for a ``Box``); the reward sees the env's actions, as the
expert data has them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize


class ReplayRewardSource(Protocol):
    """What :class:`ReplayRewardCallback` needs of a learned reward (:class:`~rlgen.agents.gail.GAIL` has both)."""

    rng: np.random.Generator

    def train_discriminator(self, policy_obs: np.ndarray, policy_actions: np.ndarray,
                            metrics: bool = True) -> dict[str, float]:
        """Learn from policy pairs (one round); return scalar metrics (``metrics=False``: as few as it can)."""

    def reward(self, obs: Any, actions: Any) -> np.ndarray:
        """The reward of a batch of ``(s, a)`` (env actions), shape ``(B,)``."""

    #: whether it scores the absorbing state of terminated episodes (then it also has ``absorbing_reward()`` and
    #: ``train_discriminator`` takes ``policy_absorbing``, a mask of the rows that are that state)
    absorbing: bool


class RelabeledReplayBuffer(ReplayBuffer):
    """SB3's :class:`ReplayBuffer` whose samples carry ``reward_fn(obs, env_actions)`` instead of the stored
    (env) rewards, once :class:`ReplayRewardCallback` has set ``reward_fn``; the stored rewards stay untouched (they
    are the env's, for checkpoints and for anyone who reads the buffer)."""

    #: ``(observations, actions, dones) -> rewards`` of a minibatch (SB3's ``dones``: terminations, not time limits)
    reward_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    #: the expert's transitions (scaled actions, as the buffer's), of which every minibatch holds ``expert_share``
    expert: ReplayBufferSamples | None = None
    expert_share: float = 0.0

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> ReplayBufferSamples:
        n_expert = round(self.expert_share * batch_size) if self.expert is not None else 0
        samples = super().sample(batch_size - n_expert, env)
        if n_expert:
            rows = torch.as_tensor(np.random.randint(0, len(self.expert.observations), size=n_expert),
                                   device=self.device)  # (np.random: SB3's own draws, seeded with the run)
            samples = ReplayBufferSamples(*(torch.cat([mine, theirs[rows]])
                                            for mine, theirs in zip(samples[:5], self.expert[:5])))
        if self.reward_fn is None:
            return samples
        rewards = self.reward_fn(samples.observations, samples.actions, samples.dones)
        return samples._replace(rewards=rewards.reshape(samples.rewards.shape).to(samples.rewards.dtype))

    def share_expert_transitions(self, obs: np.ndarray, scaled_actions: np.ndarray, next_obs: np.ndarray,
                                 terminated: np.ndarray, share: float) -> None:
        """Make ``share`` of every minibatch the expert's transitions (``terminated``: the episode ended there in a
        terminal state), rewarded as the policy's are when sampled."""
        if not 0 < share < 1:
            raise ValueError(f"the expert's share of a minibatch must be in (0, 1), got {share}")
        column = np.asarray(terminated, np.float32).reshape(-1, 1)  # dones and rewards: (N, 1), as SB3's samples
        data = (obs, scaled_actions, next_obs, column, np.zeros_like(column))
        self.expert = ReplayBufferSamples(*(self.to_torch(np.asarray(x, np.float32)) for x in data))
        self.expert_share = float(share)

    _counted_rows = 0  # terminations() has counted rows [0, _counted_rows) of a buffer that has not wrapped
    _counted_terminations = 0

    def terminations(self) -> int:
        """Transitions in the buffer that ended an episode by termination (not by a time limit). Counted on from
        the last call (a round after every env step must not sum a million rows); a buffer that has wrapped around
        overwrites rows, and is counted afresh."""
        if self.full:
            return int((self.dones * (1 - self.timeouts)).sum())
        if self.pos < self._counted_rows:  # emptied (reset) since
            self._counted_rows = self._counted_terminations = 0
        new = slice(self._counted_rows, self.pos)
        self._counted_terminations += int((self.dones[new] * (1 - self.timeouts[new])).sum())
        self._counted_rows = self.pos
        return self._counted_terminations


class ReplayRewardCallback(BaseCallback):
    """Train ``source`` on the replay buffer after every ``collect_rollouts`` (every ``train_freq`` env steps: a
    round of ``source``'s own updates on ``pairs_per_round`` transitions drawn uniformly from the buffer, against
    expert pairs), and make the buffer's samples carry its reward. The model must have been built with
    ``replay_buffer_class=RelabeledReplayBuffer``.

    :param source: the learned reward.
    :param pairs_per_round: policy transitions drawn from the buffer for each round.
    :param metrics_every: rounds between metric records (a round is an env step or a few: SB3 writes the latest
        record every few episodes, and measuring every round would cost as much as a tenth of the round).
    """

    def __init__(self, source: ReplayRewardSource, pairs_per_round: int = 256, metrics_every: int = 100,
                 verbose: int = 0):
        super().__init__(verbose)
        self.source = source
        self.pairs_per_round = int(pairs_per_round)
        self.metrics_every = int(metrics_every)
        self._rounds = 0

    def _init_callback(self) -> None:
        if not isinstance(self.model, OffPolicyAlgorithm):
            raise TypeError(f"ReplayRewardCallback needs an off-policy algorithm, not {type(self.model).__name__}")
        buffer = self.model.replay_buffer
        if not isinstance(buffer, RelabeledReplayBuffer):
            raise TypeError("build the model with replay_buffer_class=RelabeledReplayBuffer, not "
                            f"{type(buffer).__name__}")
        space = self.model.action_space
        if not isinstance(space, spaces.Box):
            raise TypeError(f"ReplayRewardCallback needs Box actions, not {type(space).__name__}")
        self.absorbing = bool(self.source.absorbing)
        device = self.model.device
        low = torch.as_tensor(space.low, dtype=torch.float32, device=device)
        span = torch.as_tensor(space.high - space.low, dtype=torch.float32, device=device)
        horizon = self.model.gamma / (1.0 - self.model.gamma)  # sum of gamma^t over the absorbing state's steps

        def reward_fn(obs: torch.Tensor, scaled_actions: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
            env_actions = low + 0.5 * (scaled_actions + 1.0) * span  # the policy's unscale_action, on the device
            rewards = torch.as_tensor(self.source.reward(obs, env_actions), device=device)
            if self.absorbing:  # a terminal transition enters the absorbing state: add that state's value
                worst = min(self.source.absorbing_reward(), float(rewards.min())) + self._entropy_term()
                rewards = rewards + dones.reshape(rewards.shape) * (horizon * worst)
            return rewards

        buffer.reward_fn = reward_fn

    def _entropy_term(self) -> float:
        """SAC's expected ``-alpha log pi`` a step in the absorbing state: ``alpha`` times the target entropy (0 for
        a deterministic policy)."""
        model = self.model
        if not isinstance(model, SAC):
            return 0.0
        alpha = model.log_ent_coef.detach().exp() if model.ent_coef_optimizer is not None else model.ent_coef_tensor
        return float(alpha) * float(model.target_entropy)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.replay_buffer
        filled = buffer.buffer_size if buffer.full else buffer.pos
        if filled * buffer.n_envs < self.pairs_per_round:
            return
        rows = self.source.rng.integers(0, filled, size=self.pairs_per_round)
        envs = self.source.rng.integers(0, buffer.n_envs, size=self.pairs_per_round)
        obs = buffer.observations[rows, envs]
        actions = self.model.policy.unscale_action(buffer.actions[rows, envs])
        measure = self._rounds % self.metrics_every == 0
        self._rounds += 1
        extra: dict[str, Any] = {}
        if self.absorbing:  # DAC's buffer holds one absorbing transition per terminated episode
            ended = buffer.terminations()
            extra["policy_absorbing"] = self.source.rng.random(self.pairs_per_round) < ended / (
                filled * buffer.n_envs + ended)
        for key, value in self.source.train_discriminator(obs, actions, metrics=measure, **extra).items():
            self.logger.record(key, value)  # SB3 writes the latest value of each key when it dumps
