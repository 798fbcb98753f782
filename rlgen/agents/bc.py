"""Behaviour cloning: maximum likelihood of the expert's actions under an SB3 actor-critic policy.

The policy is the one SB3's PPO would build for the env (Gaussian for ``Box`` actions, categorical for
``Discrete``), so the cloned policy is saved as a PPO zip and loads, rolls out and evaluates like any expert.
Training is plain supervised learning on ``(s, a)`` pairs with Adam::

    loss = -mean log pi(a|s) - entropy_weight * mean H(pi(.|s)) + l2_weight * sum ||theta||^2

Only the actor is trained; the (unused) value head keeps its initial weights. With a validation share
(``val_fraction``) the policy kept is that of the epoch with the best validation score, as the original GAIL code
(github.com/openai/imitation) picks its behavioural-cloning snapshot: minus the held-out negative log-likelihood
(``Discrete``; the original found action accuracy not meaningful) or minus the squared error of the deterministic
action, summed over action dimensions and averaged over the held-out pairs (``Box``; here the action as the env
gets it, clipped to its bounds). Of epochs with equal scores the later, more trained one is kept, where the
original takes the first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO


class BehaviorCloning:
    """Clone ``(expert_obs, expert_actions)`` into the policy of ``model`` (a PPO instance).

    :param model: a PPO model whose policy is trained (built with the env and ``policy_kwargs`` wanted).
    :param expert_obs: ``(N, *obs_shape)`` observations.
    :param expert_actions: ``(N, *act_shape)`` actions (``(N,)`` integers for ``Discrete``).
    :param learning_rate: Adam step size.
    :param batch_size: pairs per gradient step.
    :param entropy_weight: weight of the entropy bonus.
    :param l2_weight: weight of the L2 penalty on all policy parameters.
    :param val_fraction: share of the pairs held out to score each epoch's policy; :meth:`restore_best` then
        brings back the best-scoring one.
    :param seed: seed of the train/validation split and of the minibatch order.
    """

    def __init__(self, model: PPO, expert_obs: np.ndarray, expert_actions: np.ndarray, learning_rate: float = 1e-3,
                 batch_size: int = 128, entropy_weight: float = 1e-3, l2_weight: float = 0.0,
                 val_fraction: float = 0.0, seed: int = 0):
        if len(expert_obs) != len(expert_actions) or len(expert_obs) == 0:
            raise ValueError(f"need matching, non-empty expert data, got {len(expert_obs)} observations and "
                             f"{len(expert_actions)} actions")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.model = model
        self.policy = model.policy
        self.device = self.policy.device
        self.batch_size = int(batch_size)
        self.entropy_weight = float(entropy_weight)
        self.l2_weight = float(l2_weight)
        self.rng = np.random.default_rng(seed)
        self.epoch = 0
        discrete = isinstance(model.action_space, spaces.Discrete)
        obs = torch.as_tensor(np.asarray(expert_obs, np.float32), device=self.device)
        acts = torch.as_tensor(np.asarray(expert_actions).reshape(len(expert_actions), -1)[:, 0].astype(np.int64)
                               if discrete else np.asarray(expert_actions, np.float32), device=self.device)
        order = self.rng.permutation(len(obs))
        n_val = round(val_fraction * len(obs))
        if n_val and len(obs) - n_val < 1:
            raise ValueError("val_fraction leaves no training pairs")
        val_idx, train_idx = order[:n_val], order[n_val:]
        self.train_obs, self.train_actions = obs[train_idx], acts[train_idx]
        self.val_obs, self.val_actions = obs[val_idx], acts[val_idx]
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=learning_rate)
        self.best_score = -np.inf
        self.best_epoch = 0
        self.best_policy: dict[str, torch.Tensor] | None = None

    @property
    def n_train(self) -> int:
        return len(self.train_obs)

    def _loss(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _, log_prob, entropy = self.policy.evaluate_actions(obs, actions)
        nll = -log_prob.mean()
        ent = entropy.mean() if entropy is not None else torch.zeros((), device=self.device)
        return nll, ent, nll - self.entropy_weight * ent

    def train_epoch(self) -> dict[str, float]:
        """One pass over the training pairs in random minibatches; returns the epoch's mean losses."""
        self.policy.set_training_mode(True)
        order = torch.as_tensor(self.rng.permutation(self.n_train), device=self.device)
        totals = np.zeros(3)
        batches = 0
        for start in range(0, self.n_train, self.batch_size):
            idx = order[start:start + self.batch_size]
            nll, ent, loss = self._loss(self.train_obs[idx], self.train_actions[idx])
            if self.l2_weight:
                loss = loss + self.l2_weight * sum(p.pow(2).sum() for p in self.policy.parameters())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            totals += (loss.item(), nll.item(), ent.item())
            batches += 1
        self.epoch += 1
        loss_mean, nll_mean, ent_mean = totals / max(batches, 1)
        metrics = {"bc/loss": loss_mean, "bc/neg_log_likelihood": nll_mean, "bc/entropy": ent_mean,
                   "bc/epoch": self.epoch}
        if len(self.val_obs):
            score = self.validation_score()
            metrics.update({"bc/val_neg_log_likelihood": self.validation_nll(), "bc/val_score": score})
            if score >= self.best_score:  # of equal scores, the later epoch
                self.best_score, self.best_epoch = score, self.epoch
                self.best_policy = {k: v.detach().clone() for k, v in self.policy.state_dict().items()}
        return metrics

    def train(self, epochs: int) -> dict[str, float]:
        """Train for ``epochs`` more epochs, then keep the policy of the best held-out epoch (:meth:`restore_best`).
        Returns the last epoch's metrics with ``bc/kept_epoch``. (The CLI runs :meth:`train_epoch` itself, to log
        and checkpoint between epochs.)"""
        metrics: dict[str, float] = {}
        for _ in range(int(epochs)):
            metrics = self.train_epoch()
        return {**metrics, "bc/kept_epoch": self.restore_best()}

    def validation_score(self) -> float:
        """The held-out score that picks the epoch kept (higher is better): minus the negative log-likelihood
        (``Discrete``) or minus the squared action error (``Box``, :meth:`action_accuracy`)."""
        if isinstance(self.model.action_space, spaces.Discrete):
            return -self.validation_nll()
        return self.action_accuracy(self.val_obs.cpu().numpy(), self.val_actions.cpu().numpy())

    def restore_best(self) -> int:
        """Load the policy of the best-scoring epoch (without a validation share: keep the last); return its
        epoch."""
        if self.best_policy is None:
            return self.epoch
        self.policy.load_state_dict(self.best_policy)
        return self.best_epoch

    @torch.no_grad()
    def validation_nll(self) -> float:
        self.policy.set_training_mode(False)
        return float(self._loss(self.val_obs, self.val_actions)[0].item())

    @torch.no_grad()
    def action_accuracy(self, obs: np.ndarray, actions: np.ndarray) -> float:
        """Share of ``actions`` the deterministic policy reproduces (``Discrete``), or minus the squared error of
        its actions summed over action dimensions, averaged over pairs (``Box``)."""
        predicted, _ = self.model.predict(np.asarray(obs, np.float32), deterministic=True)
        if isinstance(self.model.action_space, spaces.Discrete):
            return float(np.mean(predicted.reshape(-1) == np.asarray(actions).reshape(-1)))
        error = (predicted - np.asarray(actions)).reshape(len(predicted), -1)
        return -float(np.mean(np.sum(error ** 2, axis=1)))

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": self.rng.bit_generator.state, "epoch": self.epoch, "torch_rng": torch.get_rng_state(),
                "best_policy": self.best_policy, "best_epoch": self.best_epoch,
                "best_score": float(self.best_score) if self.best_policy is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        self.epoch = int(state["epoch"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("best_policy") is not None:  # (checkpoints written before model selection have none)
            self.best_policy, self.best_epoch = state["best_policy"], int(state["best_epoch"])
            self.best_score = float(state["best_score"])
