"""GAIL (Ho & Ermon, 2016, arXiv:1606.03476) as a :class:`~rlgen.common.reward_relabel.RewardSource`.

Reward learning is kept apart from RL: :class:`GAIL` only sees each rollout (through
:class:`~rlgen.common.reward_relabel.RewardRelabelCallback`, the mechanism VIME uses too) and returns the
rewards PPO/TRPO then optimise. Each rollout (one policy iteration of the paper's Algorithm 1):

1. draw as many expert ``(s, a)`` pairs as the rollout has transitions (with replacement);
2. update the discriminator's input normaliser with both, then take ``updates_per_round`` Adam steps on the
   logistic loss, expert labelled 1 and policy 0, each class weighted equally, minus a small entropy bonus on
   D's predictions (as the original code, github.com/openai/imitation: Adam, learning rate 0.01, one step,
   entropy weight 1e-3), plus, optionally, a gradient penalty (``gradient_penalty``);
3. reward every transition with the updated discriminator: ``-log(1 - D(s, a))`` (default), ``log D(s, a)`` or
   their sum ``log D - log(1 - D)``, plus, optionally, the paper's causal-entropy bonus ``-lambda log pi(a|s)``
   (``policy_entropy_weight``).

The original code rewards a batch with the discriminator *before* fitting it on that batch; Algorithm 1 of the
paper (followed here) fits first. Episodes of any length are handled transition by transition; SB3 bootstraps
time-limit truncations and the reward's sign sets whether longer episodes pay (see
:mod:`rlgen.agents.gail.discriminator`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from rlgen.agents.gail.discriminator import REWARD_TYPES, Discriminator, discriminator_loss, reward_from_logits
from rlgen.common.reward_relabel import RewardSource, TransitionBatch


class GAIL(RewardSource):
    """The GAIL discriminator as a reward source for SB3's on-policy algorithms.

    :param expert_obs: expert observations ``(N, *obs_shape)`` (already subsampled).
    :param expert_actions: the matching actions, ``(N, *act_shape)`` or ``(N,)`` integers for ``Discrete``.
    :param observation_space: the env's (``Box``) observation space.
    :param action_space: the env's ``Box`` or ``Discrete`` action space.
    :param hidden_sizes: discriminator hidden layers (paper: ``(100, 100)``).
    :param activation: discriminator non-linearity (paper: ``tanh``).
    :param learning_rate: Adam step size for the discriminator (original code: 0.01).
    :param updates_per_round: Adam steps on each rollout (original code: 1).
    :param batch_size: policy pairs (and as many expert pairs) per Adam step, drawn afresh from the rollout for
        each step; ``None`` uses the whole rollout in every step (the original code).
    :param entropy_weight: weight of the entropy bonus on D's predictions (original code: 1e-3).
    :param reward: ``neg_log_1_minus_d`` (``-log(1 - D)``), ``log_d`` (``log D``, for tasks ending on success) or
        ``logit`` (``log D - log(1 - D)``; with ``absorbing``, as DAC).
    :param normalize_input: standardise D's inputs with running statistics, started on the expert data.
    :param policy_entropy_weight: the paper's causal-entropy weight ``lambda`` (0 disables it).
    :param gradient_penalty: weight of ``(|grad z| - 1)^2``, the gradient of D's logit with respect to its
        (standardised) input at random points between a policy and an expert pair (Gulrajani et al. 2017; DAC and
        ikostrikov's GAIL use it with weight 10): it keeps D smooth, so that its reward still ranks policy pairs
        once it tells them from a few demos' pairs almost perfectly. 0 disables it (the paper's GAIL).
    :param absorbing: D also scores the absorbing state of terminated episodes (DAC's; see
        :mod:`rlgen.agents.gail.discriminator`): an off-policy generator's terminal transitions then carry its
        value (:mod:`rlgen.common.replay_relabel`). Policy draws say which of their rows are absorbing.
    :param expert_absorbing_share: the share of expert draws that are the absorbing state, ``terminated episodes /
        (pairs + terminated episodes)`` of the demos (one absorbing pair per terminated episode, as DAC's buffer).
    :param obs_features: D sees only the first N observation features (None: all; see
        :class:`~rlgen.agents.gail.discriminator.Discriminator`).
    :param seed: seed of the expert-sample draws.
    :param device: torch device of the discriminator.
    """

    console_keys = ("gail/disc_accuracy", "gail/reward_mean")

    def __init__(self, expert_obs: np.ndarray, expert_actions: np.ndarray, observation_space: spaces.Box,
                 action_space: spaces.Space, *, hidden_sizes: Sequence[int] = (100, 100),
                 activation: str = "tanh", learning_rate: float = 0.01, updates_per_round: int = 1,
                 batch_size: int | None = None, entropy_weight: float = 1e-3, reward: str = "neg_log_1_minus_d",
                 normalize_input: bool = True,
                 policy_entropy_weight: float = 0.0, gradient_penalty: float = 0.0, absorbing: bool = False,
                 expert_absorbing_share: float = 0.0, obs_features: int | None = None, seed: int = 0,
                 device: str | torch.device = "cpu"):
        if reward not in REWARD_TYPES:
            raise ValueError(f"unknown GAIL reward {reward!r}; use one of {', '.join(REWARD_TYPES)}")
        if len(expert_obs) == 0 or len(expert_obs) != len(expert_actions):
            raise ValueError(f"need matching, non-empty expert data, got {len(expert_obs)} observations and "
                             f"{len(expert_actions)} actions")
        if tuple(expert_obs.shape[1:]) != tuple(observation_space.shape):
            raise ValueError(f"expert observations have shape {expert_obs.shape[1:]}, the env {observation_space.shape}")
        if not 0 <= expert_absorbing_share < 1 or (expert_absorbing_share and not absorbing):
            raise ValueError(f"expert_absorbing_share must be in [0, 1) and needs absorbing=True, got "
                             f"{expert_absorbing_share}")
        self.absorbing = bool(absorbing)
        self.expert_absorbing_share = float(expert_absorbing_share)
        self.device = torch.device(device)
        self.discrete = isinstance(action_space, spaces.Discrete)
        self.reward_type = reward
        self.updates_per_round = int(updates_per_round)
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be positive or None, got {batch_size}")
        self.batch_size = None if batch_size is None else int(batch_size)
        self.entropy_weight = float(entropy_weight)
        self.policy_entropy_weight = float(policy_entropy_weight)
        self.gradient_penalty = float(gradient_penalty)
        self.rng = np.random.default_rng(seed)
        self.rounds = 0
        self.expert_obs = torch.as_tensor(np.asarray(expert_obs, np.float32), device=self.device)
        self.expert_actions = self._actions_tensor(expert_actions)
        self.discriminator = Discriminator(observation_space, action_space, hidden_sizes, activation,
                                           normalize_input, absorbing, obs_features).to(self.device)
        self.discriminator.update_normalizer(self.expert_obs, self.expert_actions)  # start on the expert data
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=learning_rate)

    @property
    def n_expert(self) -> int:
        return len(self.expert_obs)

    def _actions_tensor(self, actions: np.ndarray | torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return torch.as_tensor(actions, device=self.device).reshape(-1).long()
        return torch.as_tensor(actions, dtype=torch.float32, device=self.device)

    def _obs_tensor(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(obs, dtype=torch.float32, device=self.device)

    # ------------------------------------------------------------------------------------ discriminator
    def train_discriminator(self, policy_obs: np.ndarray, policy_actions: np.ndarray,
                            expert_obs: torch.Tensor | np.ndarray | None = None,
                            expert_actions: torch.Tensor | np.ndarray | None = None,
                            steps: int | None = None, metrics: bool = True,
                            policy_absorbing: np.ndarray | None = None) -> dict[str, float]:
        """Fit D on policy samples against expert samples (an equal-size draw from the expert data when not
        given) for ``steps`` Adam steps (default ``updates_per_round``); return loss and accuracies (with
        ``metrics=False`` only the round count: a caller that trains D after every env step logs a few rounds).
        ``policy_absorbing`` (with ``absorbing``): a ``(B,)`` mask of the policy rows that are the absorbing state;
        the drawn expert rows are, each with probability ``expert_absorbing_share``."""
        p_obs, p_act = self._obs_tensor(policy_obs), self._actions_tensor(policy_actions)
        p_abs = e_abs = None
        if self.absorbing:
            p_abs = torch.zeros(len(p_obs), dtype=torch.bool, device=self.device) if policy_absorbing is None else \
                torch.as_tensor(policy_absorbing, dtype=torch.bool, device=self.device)
        if expert_obs is None or expert_actions is None:
            idx = torch.as_tensor(self.rng.integers(0, self.n_expert, size=len(p_obs)), device=self.device)
            e_obs, e_act = self.expert_obs[idx], self.expert_actions[idx]
            if self.absorbing:
                e_abs = torch.as_tensor(self.rng.random(len(p_obs)) < self.expert_absorbing_share, device=self.device)
        else:
            e_obs = expert_obs if isinstance(expert_obs, torch.Tensor) else self._obs_tensor(expert_obs)
            e_act = expert_actions if isinstance(expert_actions, torch.Tensor) else self._actions_tensor(expert_actions)
            if self.absorbing:
                e_abs = torch.zeros(len(e_obs), dtype=torch.bool, device=self.device)
        d = self.discriminator
        real = (slice(None), slice(None)) if p_abs is None else (~p_abs, ~e_abs)  # the absorbing rows have no s, a
        d.update_normalizer(torch.cat([p_obs[real[0]], e_obs[real[1]]]), torch.cat([p_act[real[0]], e_act[real[1]]]))
        d.train()
        loss = torch.zeros(())
        minibatch = self.batch_size is not None and self.batch_size < len(p_obs)

        def rows(mask: torch.Tensor | None, at: torch.Tensor | slice) -> torch.Tensor | None:
            return None if mask is None else mask[at]

        for _ in range(self.updates_per_round if steps is None else int(steps)):
            if minibatch:  # a fresh draw of policy and expert pairs for each step
                i = torch.as_tensor(self.rng.integers(0, len(p_obs), size=self.batch_size), device=self.device)
                j = torch.as_tensor(self.rng.integers(0, len(e_obs), size=self.batch_size), device=self.device)
                policy, expert = (p_obs[i], p_act[i], rows(p_abs, i)), (e_obs[j], e_act[j], rows(e_abs, j))
            else:
                policy, expert = (p_obs, p_act, p_abs), (e_obs, e_act, e_abs)
            # one pass over policy and expert rows together: at D's size, calls cost more than arithmetic
            x = d.inputs(*(None if policy[k] is None else torch.cat([policy[k], expert[k]]) for k in range(3)))
            logits = d.net(x).squeeze(-1)
            n = len(policy[0])
            loss = discriminator_loss(logits[:n], logits[n:], self.entropy_weight)
            if self.gradient_penalty:
                m = min(len(policy[0]), len(expert[0]))
                real_pairs = None if policy[2] is None else ~(policy[2][:m] | expert[2][:m])
                loss = loss + self.gradient_penalty * self._penalty_between(x[:n].detach(), x[n:].detach(),
                                                                            real_pairs)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.rounds += 1
        if not metrics:
            return {"gail/rounds": self.rounds}
        with torch.no_grad():
            p_logits, e_logits = d(p_obs, p_act, p_abs), d(e_obs, e_act, e_abs)
            acc_policy = (p_logits <= 0).float().mean().item()
            acc_expert = (e_logits > 0).float().mean().item()
            final_loss = discriminator_loss(p_logits, e_logits, 0.0).item()
        out = {"gail/rounds": self.rounds, "gail/disc_loss": float(final_loss),
               "gail/disc_accuracy": 0.5 * (acc_policy + acc_expert), "gail/disc_accuracy_policy": acc_policy,
               "gail/disc_accuracy_expert": acc_expert,
               "gail/expert_reward_mean": float(reward_from_logits(e_logits, self.reward_type).mean().item()),
               "gail/policy_reward_mean": float(reward_from_logits(p_logits, self.reward_type).mean().item())}
        if self.absorbing:
            out["gail/absorbing_reward"] = self.absorbing_reward()
        return out

    def _gradient_penalty(self, p_obs: torch.Tensor, p_act: torch.Tensor, e_obs: torch.Tensor, e_act: torch.Tensor,
                          p_abs: torch.Tensor | None = None, e_abs: torch.Tensor | None = None) -> torch.Tensor:
        """``mean (|grad_x z(x)| - 1)^2`` at ``x = u x_expert + (1 - u) x_policy``, ``u ~ U(0, 1)`` per pair."""
        d = self.discriminator
        with torch.no_grad():
            p_x, e_x = d.inputs(p_obs, p_act, p_abs), d.inputs(e_obs, e_act, e_abs)
        return self._penalty_between(p_x, e_x)

    def _penalty_between(self, p_x: torch.Tensor, e_x: torch.Tensor,
                         real_pairs: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`_gradient_penalty` between the network inputs of policy and expert rows; with ``real_pairs``
        (a mask of the row pairs), only there. The absorbing state is no point of the (s, a) space whose smoothness
        the penalty keeps, and left out of it, D may score it as low as the policy's share of it says: bounded by
        the penalty, its score stayed above the policy's own pairs' on Humanoid, so that falling paid."""
        n = min(len(p_x), len(e_x))
        p_x, e_x = p_x[:n], e_x[:n]
        if real_pairs is not None:
            p_x, e_x = p_x[real_pairs[:n]], e_x[real_pairs[:n]]
            n = len(p_x)
        u = torch.as_tensor(self.rng.random((n, 1)), dtype=p_x.dtype, device=self.device)
        mix = (u * e_x + (1 - u) * p_x).requires_grad_()
        (grad,) = torch.autograd.grad(self.discriminator.net(mix).sum(), mix, create_graph=True)
        return (grad.norm(dim=1) - 1).square().mean()

    @torch.no_grad()
    def logits(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        self.discriminator.eval()
        return self.discriminator(self._obs_tensor(obs), self._actions_tensor(actions)).cpu().numpy()

    def expert_probability(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """``D(s, a)`` for a batch, shape ``(B,)``."""
        return 1.0 / (1.0 + np.exp(-self.logits(obs, actions).astype(np.float64)))

    @torch.no_grad()
    def reward(self, obs: np.ndarray | torch.Tensor, actions: np.ndarray | torch.Tensor) -> np.ndarray:
        """GAIL's reward for a batch of ``(s, a)`` with the current discriminator, shape ``(B,)``."""
        self.discriminator.eval()
        logits = self.discriminator(self._obs_tensor(obs), self._actions_tensor(actions))
        return reward_from_logits(logits, self.reward_type).cpu().numpy()

    @torch.no_grad()
    def absorbing_reward(self) -> float:
        """The reward of a step in the absorbing state (``absorbing`` only)."""
        return float(reward_from_logits(self.discriminator.absorbing_logit(), self.reward_type).item())

    # --------------------------------------------------------------------------------------- RewardSource
    def relabel(self, batch: TransitionBatch) -> tuple[np.ndarray, dict[str, float]]:
        flat = batch.flat()
        metrics = self.train_discriminator(flat.obs, flat.actions)
        rewards = self.reward(flat.obs, flat.actions).astype(np.float32)
        metrics["gail/reward_mean"] = float(rewards.mean())
        if self.policy_entropy_weight:
            if flat.log_probs is None:
                raise ValueError("policy_entropy_weight > 0 needs the policy's log probabilities in the batch")
            log_probs = np.asarray(flat.log_probs, np.float32)
            bonus = -self.policy_entropy_weight * log_probs
            rewards = rewards + bonus
            metrics["gail/policy_entropy_bonus_mean"] = float(bonus.mean())
        return rewards.reshape(batch.shape), metrics

    def state_dict(self) -> dict[str, Any]:
        return {"discriminator": self.discriminator.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": self.rng.bit_generator.state, "rounds": self.rounds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        self.rounds = int(state.get("rounds", 0))
