"""Replay pool of transitions on which VIME's Bayesian dynamics model is trained.

Differences from ``SimpleReplayPool`` in the original code (``openai/vime``, ``algos/batch_polopt_expl.py``):

* it stores explicit ``(obs, action, next_obs)`` triples instead of consecutive observations plus terminal flags,
  so no transition ever straddles an episode boundary (the original's ``random_batch`` only guarded against the
  end of the pool, not against episode ends);
* samples are added a batch at a time (vectorised ring-buffer write) instead of one ``add_sample`` call each;
* the statistics used for normalisation are those of the model's inputs ``[obs, action]`` and targets
  ``next_obs`` (the original normalised ``next_obs`` with the ``obs`` statistics, which is almost the same thing).

Defaults follow ``BatchPolopt``: ``replay_pool_size=100000`` and ``min_pool_size=500``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class ReplayPool:
    """Fixed-capacity ring buffer of ``(obs, action, next_obs)`` transitions.

    :param obs_dim: Size of a (flat) observation.
    :param action_dim: Size of a (flat) action.
    :param capacity: Maximum number of transitions kept; the oldest are overwritten first.
    :param min_size: Number of transitions needed before the dynamics model is trained (see :attr:`ready`).
    """

    def __init__(self, obs_dim: int, action_dim: int, capacity: int = 100_000, min_size: int = 500) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.obs_dim = int(obs_dim)
        self.action_dim = int(action_dim)
        self.capacity = int(capacity)
        self.min_size = int(min_size)
        self.observations = np.zeros((self.capacity, self.obs_dim), dtype=np.float32)
        self.actions = np.zeros((self.capacity, self.action_dim), dtype=np.float32)
        self.next_observations = np.zeros((self.capacity, self.obs_dim), dtype=np.float32)
        self.pos = 0  # next row to write
        self.size = 0

    def __len__(self) -> int:
        return self.size

    @property
    def ready(self) -> bool:
        """Whether the pool holds at least ``min_size`` transitions (the original trains only then)."""
        return self.size >= self.min_size

    def add_batch(self, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray) -> None:
        """Append a batch of transitions, overwriting the oldest ones once the pool is full.

        :param obs: Observations, shape ``(n, obs_dim)``.
        :param actions: Actions, shape ``(n, action_dim)``.
        :param next_obs: Next observations, shape ``(n, obs_dim)``.
        """
        obs = np.asarray(obs, dtype=np.float32).reshape(-1, self.obs_dim)
        actions = np.asarray(actions, dtype=np.float32).reshape(-1, self.action_dim)
        next_obs = np.asarray(next_obs, dtype=np.float32).reshape(-1, self.obs_dim)
        n = obs.shape[0]
        if actions.shape[0] != n or next_obs.shape[0] != n:
            raise ValueError(f"batch sizes differ: obs {n}, actions {actions.shape[0]}, next_obs {next_obs.shape[0]}")
        # Only the last `capacity` rows can survive; write them where a sequential writer would have put them.
        kept = min(n, self.capacity)
        rows = (self.pos + np.arange(n - kept, n)) % self.capacity
        self.observations[rows] = obs[n - kept :]
        self.actions[rows] = actions[n - kept :]
        self.next_observations[rows] = next_obs[n - kept :]
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(
        self, batch_size: int, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sample transitions uniformly with replacement (as the original ``random_batch``).

        :param batch_size: Number of transitions.
        :param rng: NumPy generator; a fresh unseeded one if ``None``.
        :return: ``(obs, actions, next_obs)`` arrays.
        """
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay pool")
        rng = np.random.default_rng() if rng is None else rng
        idx = rng.integers(0, self.size, size=batch_size)
        return self.observations[idx], self.actions[idx], self.next_observations[idx]

    def mean_std(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-dimension statistics of the stored data, used to normalise the dynamics model.

        :return: ``(input_mean, input_std, target_mean, target_std)`` where inputs are ``[obs, action]``
            concatenated and targets are ``next_obs``.
        """
        if self.size == 0:
            raise ValueError("replay pool is empty: no statistics yet")
        # Rows [0, size) are exactly the filled rows, whether or not the buffer has wrapped.
        inputs = np.concatenate([self.observations[: self.size], self.actions[: self.size]], axis=1)
        targets = self.next_observations[: self.size]
        return inputs.mean(0), inputs.std(0), targets.mean(0), targets.std(0)

    def state_dict(self) -> dict[str, Any]:
        """Checkpointable state made only of tensors and ints (loads with ``torch.load(weights_only=True)``)."""
        n = self.size
        return {
            "observations": torch.from_numpy(self.observations[:n].copy()),
            "actions": torch.from_numpy(self.actions[:n].copy()),
            "next_observations": torch.from_numpy(self.next_observations[:n].copy()),
            "pos": self.pos,
            "size": self.size,
            "capacity": self.capacity,
            "min_size": self.min_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state produced by :meth:`state_dict` of a pool with the same dimensions and capacity."""
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"capacity mismatch: checkpoint {int(state['capacity'])}, pool {self.capacity}")
        obs = torch.as_tensor(state["observations"]).numpy()
        actions = torch.as_tensor(state["actions"]).numpy()
        next_obs = torch.as_tensor(state["next_observations"]).numpy()
        n = int(state["size"])
        if (
            obs.shape != (n, self.obs_dim)
            or actions.shape != (n, self.action_dim)
            or next_obs.shape != (n, self.obs_dim)
        ):
            raise ValueError("replay pool checkpoint does not match this pool's observation/action dimensions")
        self.observations[:n] = obs
        self.actions[:n] = actions
        self.next_observations[:n] = next_obs
        self.size = n
        self.pos = int(state["pos"])
        self.min_size = int(state["min_size"])
