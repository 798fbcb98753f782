"""VIME as a reward source attached to any SB3 on-policy algorithm (PPO, sb3-contrib's TRPO, A2C).

Each rollout, in the order of the original ``openai/vime`` (``algos/batch_polopt_expl.py``):

1. the information gain of every transition under the current BNN posterior (one batched call, no loop), or
   with ``kl_chunk`` that of chunks of consecutive transitions, as the original code;
2. its median joins the last ``median_window`` batch medians, and the gains are divided by their mean
   (``use_kl_ratio_q``), so ``eta`` does not depend on the env's scale; rlgen then caps them at
   ``max_normalised_gain`` (100; the paper has no cap);
3. ``r = r_ext + eta * IG_normalised`` (no bonus before the BNN has been fitted once: the original skips the
   first iteration), or the bonus alone with ``extrinsic=False``, to add to another reward source
   (:class:`~rlgen.common.reward_sum.RewardSum`: GAIL with VIME's exploration bonus);
4. the transitions join the replay pool and the BNN is fitted on the pool.

Usage::

    model = TRPO("MlpPolicy", env)
    vime = VIME(model, eta=1e-4)
    vime.learn(1_000_000)           # = model.learn(..., callback=RewardRelabelCallback(vime))
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.type_aliases import MaybeCallback

from rlgen.agents.vime.bnn import BayesianDynamicsModel
from rlgen.agents.vime.replay_pool import ReplayPool
from rlgen.common.checkpoint import atomic_torch_save, load_torch
from rlgen.common.normalization import ReturnScale
from rlgen.common.reward_relabel import RewardRelabelCallback, RewardSource, TransitionBatch


def _action_dim(space: spaces.Space) -> int:
    if isinstance(space, spaces.Box):
        return int(np.prod(space.shape))
    if isinstance(space, spaces.Discrete):
        return int(space.n)  # one-hot
    raise TypeError(f"VIME supports Box and Discrete action spaces, not {type(space).__name__}")


class VIME(RewardSource):
    """Variational information maximising exploration (Houthooft et al. 2016) for an SB3 on-policy model.

    :param model: The PPO/TRPO/A2C model whose rollouts get the exploration bonus.
    :param eta: Weight of the normalised information gain.
    :param step_size: ``lambda`` of the second-order step in the information gain.
    :param hidden_sizes: BNN hidden layers (ReLU).
    :param n_samples: Monte Carlo samples of the BNN for its ELBO and for the information gain.
    :param likelihood_std: Fixed std of the BNN's Gaussian likelihood (normalised units).
    :param prior_std: Std of the BNN's Gaussian prior.
    :param learning_rate: Adam learning rate of the BNN.
    :param kl_weight: Weight of ``KL(q || prior)`` in the BNN's ELBO.
    :param n_updates: BNN updates after each rollout.
    :param batch_size: BNN minibatch size. The original takes 500 updates of 10 transitions at learning rate 1e-4
        (pass ``n_updates=500, batch_size=10, learning_rate=1e-4`` for that); rlgen's default takes the same 5,000
        samples per rollout in 50 updates of 100 at 3e-3: each tiny update costs mostly per-op overhead, so this
        is six times faster than the original's schedule and fits held-out SparseHalfCheetah transitions better
        (``python benchmarks/vime_bnn_fit.py`` compares the schedules).
    :param pool_size: Replay pool capacity.
    :param min_pool_size: Transitions needed before the BNN is trained.
    :param median_window: Number of recent batch medians the information gain is divided by.
    :param max_information_gain: Information gains are clipped to ``[0, max_information_gain]`` before
        normalisation (the original clips to 1000), so one outlier batch cannot dominate the median window.
    :param max_normalised_gain: Normalised information gains are clipped to ``[0, max_normalised_gain]``, a multiple
        of the recent medians (``None``: no cap, the paper). ``max_information_gain`` is in the BNN's raw units,
        where rlgen's gains are ~1e-6 and never reach 1000; this is the scale-free cap. Without it a few
        transitions into unseen states (gains up to 10^4 times the median on SparseHalfCheetah, where the largest
        of a typical batch is 20-50 times) earn more than the sparse reward, and with ``reward_norm`` they inflate
        the running return std for good, so that the ordinary bonus reaches the critic 100 times smaller.
    :param kl_chunk: Transitions that share one information gain: 1 (the paper: each transition its own), or the
        original code's 64, the gain of each env's consecutive ``kl_chunk`` steps together
        (:meth:`BayesianDynamicsModel.chunk_information_gain`), given to every step of the chunk.
    :param extrinsic: Add the env's own reward to the bonus (the paper); False gives the bonus alone.
    :param seed: Seed of the BNN's noise and the pool's sampling.
    """

    console_keys = ("vime/ig_mean", "vime/bnn_elbo_loss")

    def __init__(
        self,
        model: OnPolicyAlgorithm,
        eta: float = 1e-4,
        step_size: float = 0.01,
        hidden_sizes: Sequence[int] = (32,),
        n_samples: int = 10,
        likelihood_std: float = 5.0,
        prior_std: float = 0.5,
        learning_rate: float = 3e-3,
        kl_weight: float = 0.2,
        n_updates: int = 50,
        batch_size: int = 100,
        pool_size: int = 100_000,
        min_pool_size: int = 500,
        median_window: int = 10,
        max_information_gain: float = 1000.0,
        max_normalised_gain: float | None = 100.0,
        kl_chunk: int = 1,
        extrinsic: bool = True,
        seed: int = 0,
    ) -> None:
        if not isinstance(model.observation_space, spaces.Box):
            raise TypeError("VIME needs a Box observation space")
        self.model = model
        self.eta = float(eta)
        self.step_size = float(step_size)
        self.max_information_gain = float(max_information_gain)
        if max_normalised_gain is not None and not max_normalised_gain > 0:
            raise ValueError(f"max_normalised_gain must be positive or None, got {max_normalised_gain}")
        self.max_normalised_gain = None if max_normalised_gain is None else float(max_normalised_gain)
        if int(kl_chunk) < 1:
            raise ValueError(f"kl_chunk must be a positive number of transitions, got {kl_chunk}")
        self.kl_chunk = int(kl_chunk)
        self.extrinsic = bool(extrinsic)
        self._discrete = isinstance(model.action_space, spaces.Discrete)
        obs_dim = int(np.prod(model.observation_space.shape))
        act_dim = _action_dim(model.action_space)
        self.bnn = BayesianDynamicsModel(obs_dim, act_dim, hidden_sizes=tuple(hidden_sizes), prior_std=prior_std,
                                         likelihood_std=likelihood_std, n_samples=n_samples,
                                         learning_rate=learning_rate, kl_weight=kl_weight, step_size=step_size,
                                         n_updates=n_updates, batch_size=batch_size)
        self.pool = ReplayPool(obs_dim, act_dim, capacity=pool_size, min_size=min_pool_size)
        self.medians: deque[float] = deque(maxlen=median_window)
        self.fitted = False
        self.last_information_gain: np.ndarray | None = None  # (n_steps, n_envs), for inspection and tests
        self._generator = torch.Generator().manual_seed(seed)
        self._rng = np.random.default_rng(seed)

    # -- the reward source ------------------------------------------------------------------------------------

    def _flat_inputs(self, batch: TransitionBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        flat = batch.flat()
        n = flat.obs.shape[0]
        actions = flat.actions.reshape(n, -1)
        if self._discrete:
            actions = np.eye(self.bnn.action_dim, dtype=np.float32)[actions.astype(np.int64).ravel()]
        return flat.obs.reshape(n, -1), actions, flat.next_obs.reshape(n, -1)

    def information_gain(self, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray,
                         chunk_ids: np.ndarray | None = None) -> np.ndarray:
        """Clipped, unnormalised information gain of each transition (flat arrays, one row per transition); with
        ``chunk_ids`` (``(n,)``), that of each transition's chunk (see ``kl_chunk``)."""
        if chunk_ids is None:
            ig = self.bnn.information_gain(obs, actions, next_obs, step_size=self.step_size,
                                           generator=self._generator)
        else:
            ig = self.bnn.chunk_information_gain(obs, actions, next_obs, chunk_ids, step_size=self.step_size,
                                                 generator=self._generator)[torch.as_tensor(chunk_ids)]
        return np.clip(ig.cpu().numpy().astype(np.float64), 0.0, self.max_information_gain)

    def chunk_ids(self, n_steps: int, n_envs: int) -> np.ndarray:
        """The chunk of each row of a flattened ``(n_steps, n_envs)`` rollout: ``kl_chunk`` consecutive steps of
        one env (the last chunk of each env may be shorter; like the original's, chunks may span an episode
        end)."""
        per_env = -(-n_steps // self.kl_chunk)
        t, e = np.divmod(np.arange(n_steps * n_envs), n_envs)
        return e * per_env + t // self.kl_chunk

    def relabel(self, batch: TransitionBatch) -> tuple[np.ndarray, dict[str, float]]:
        obs, actions, next_obs = self._flat_inputs(batch)
        metrics: dict[str, float] = {}
        bonus = np.zeros(batch.shape, dtype=np.float64)
        if self.fitted:
            ig = self.information_gain(obs, actions, next_obs,
                                       self.chunk_ids(*batch.shape) if self.kl_chunk > 1 else None)
            self.last_information_gain = ig.reshape(batch.shape)
            self.medians.append(float(np.median(ig)))
            normalised = ig / max(float(np.mean(self.medians)), 1e-12)
            normalised_max = float(normalised.max())  # before the cap: how far the batch's outliers reach
            if self.max_normalised_gain is not None:
                normalised = np.minimum(normalised, self.max_normalised_gain)
            bonus = self.eta * normalised.reshape(batch.shape)
            metrics.update({"vime/ig_mean": float(ig.mean()), "vime/ig_median": float(np.median(ig)),
                            "vime/ig_max": float(ig.max()), "vime/ig_normalised_mean": float(normalised.mean()),
                            "vime/ig_normalised_max": normalised_max,
                            "vime/bonus_mean": float(bonus.mean())})
        self.pool.add_batch(obs, actions, next_obs)
        fit = self.bnn.fit(self.pool, rng=self._rng)
        self.fitted = self.fitted or fit["n_updates"] > 0
        metrics.update({"vime/bnn_elbo_loss": fit["elbo_loss"], "vime/pool_size": float(len(self.pool)),
                        "rollout/ext_reward_mean": float(batch.rewards.mean())})
        return (batch.rewards + bonus if self.extrinsic else bonus), metrics

    # -- SB3-style conveniences ----------------------------------------------------------------------------------

    def callback(self, reward_norm: bool = False) -> RewardRelabelCallback:
        """The callback that applies VIME to ``model.learn`` (combine it with your own callbacks); with
        ``reward_norm`` it also divides the rewards by the running std of the discounted return."""
        scale = ReturnScale(self.model.gamma, self.model.n_envs) if reward_norm else None
        return RewardRelabelCallback(self, scale)

    def learn(self, total_timesteps: int, callback: MaybeCallback = None, reward_norm: bool = False,
              **kwargs: Any) -> OnPolicyAlgorithm:
        """``model.learn`` with the VIME bonus (and ``reward_norm`` as in :meth:`callback`); extra keyword
        arguments go to ``model.learn``."""
        callbacks: list[BaseCallback] = [self.callback(reward_norm)]
        if isinstance(callback, BaseCallback):
            callbacks.append(callback)
        elif callback is not None:
            callbacks.extend(callback)  # type: ignore[arg-type]
        return self.model.learn(total_timesteps, callback=CallbackList(callbacks), **kwargs)

    def state_dict(self) -> dict[str, Any]:
        return {
            "bnn": self.bnn.state_dict(),
            "bnn_optimizer": self.bnn.optimizer.state_dict(),
            "pool": self.pool.state_dict(),
            "medians": torch.tensor(list(self.medians), dtype=torch.float64),
            "fitted": self.fitted,
            "generator": self._generator.get_state(),
            "rng": self._rng.bit_generator.state,  # (read, not drawn from: saving leaves the run's draws alone)
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bnn.load_state_dict(state["bnn"])
        self.bnn.optimizer.load_state_dict(state["bnn_optimizer"])
        self.pool.load_state_dict(state["pool"])
        self.medians.clear()
        self.medians.extend(float(m) for m in state["medians"])
        self.fitted = bool(state["fitted"])
        self._generator.set_state(state["generator"])
        if isinstance(state["rng"], dict):
            self._rng.bit_generator.state = state["rng"]
        else:  # checkpoints written before the generator's state was saved: a seed drawn from it
            self._rng = np.random.default_rng(int(state["rng"][0]) & (2**63 - 1))

    def save(self, path: str) -> None:
        """Write the BNN, its optimiser, the pool and the normaliser atomically (loads without pickle)."""
        atomic_torch_save(self.state_dict(), path)

    def load(self, path: str) -> None:
        self.load_state_dict(load_torch(path))
