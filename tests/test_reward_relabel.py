"""The one reward-relabelling mechanism: rewards replaced in SB3's buffer, advantages recomputed, s' right at
episode ends, for PPO, TRPO and A2C."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from sb3_contrib import TRPO
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env

from rlgen.common.reward_relabel import RewardRelabelCallback, RewardSource, TransitionBatch

EPISODE_LEN = 3


class CounterEnv(gym.Env):
    """obs = [t, episode index]; the env reward is 0.5; episodes end after EPISODE_LEN steps (by termination on
    odd episodes and by a time limit on even ones, to cover both)."""

    observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self) -> None:
        self.t = 0
        self.episode = -1

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.episode += 1
        return np.array([self.t, self.episode], np.float32), {}

    def step(self, action):
        self.t += 1
        done = self.t >= EPISODE_LEN
        terminated = done and self.episode % 2 == 1
        truncated = done and not terminated
        return np.array([self.t, self.episode], np.float32), 0.5, terminated, truncated, {}


class PlusObs(RewardSource):
    """New reward = 10 * obs[t] (+ the env's reward); remembers the batches it saw."""

    def __init__(self) -> None:
        self.batches: list[TransitionBatch] = []

    def relabel(self, batch):
        self.batches.append(TransitionBatch(*(np.copy(getattr(batch, k)) for k in
                                              ("obs", "actions", "next_obs", "rewards", "dones", "truncated"))))
        return batch.rewards + 10.0 * batch.obs[..., 0], {"test/mean_bonus": float(10 * batch.obs[..., 0].mean())}


class BufferSnapshot(BaseCallback):
    """Runs after the relabel callback: copies what the policy update will see."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots: list[dict[str, np.ndarray]] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        b = self.model.rollout_buffer
        self.snapshots.append({k: np.copy(getattr(b, k)) for k in
                               ("rewards", "values", "episode_starts", "advantages", "returns")}
                              | {"last_values": self.locals["values"].cpu().numpy().ravel().copy(),
                                 "dones": np.copy(self.locals["dones"])})


def gae(rewards, values, episode_starts, last_values, dones, gamma, lam):
    """Reference GAE written out step by step."""
    n = len(rewards)
    adv = np.zeros_like(rewards)
    last = 0.0
    for t in reversed(range(n)):
        if t == n - 1:
            non_terminal, next_values = 1.0 - dones.astype(np.float32), last_values
        else:
            non_terminal, next_values = 1.0 - episode_starts[t + 1], values[t + 1]
        delta = rewards[t] + gamma * next_values * non_terminal - values[t]
        last = delta + gamma * lam * non_terminal * last
        adv[t] = last
    return adv


@pytest.mark.parametrize("algo_cls", [PPO, TRPO, A2C])
def test_buffer_rewards_replaced_and_advantages_recomputed(algo_cls):
    env = make_vec_env(CounterEnv, n_envs=2, seed=0)
    kwargs = {"n_steps": 8, "seed": 0, "gamma": 0.9, "gae_lambda": 0.8}
    if algo_cls is not A2C:
        kwargs["batch_size"] = 16
    model = algo_cls("MlpPolicy", env, **kwargs)
    source, snap = PlusObs(), BufferSnapshot()
    model.learn(32, callback=CallbackList([RewardRelabelCallback(source), snap]))
    assert len(source.batches) == len(snap.snapshots) == 2
    for batch, s in zip(source.batches, snap.snapshots):
        assert batch.shape == (8, 2)
        np.testing.assert_allclose(batch.rewards, 0.5)  # the env's own reward, before any bootstrap
        # Buffer reward = env reward + bonus (+ SB3's timeout bootstrap, only on truncated steps).
        bonus = 10.0 * batch.obs[..., 0]
        not_truncated = ~batch.truncated
        np.testing.assert_allclose(s["rewards"][not_truncated], (0.5 + bonus)[not_truncated], rtol=1e-6)
        assert np.all(s["rewards"][batch.truncated] != (0.5 + bonus)[batch.truncated]) or not batch.truncated.any()
        for e in range(2):
            expected = gae(s["rewards"][:, e], s["values"][:, e], s["episode_starts"][:, e], s["last_values"][e],
                           s["dones"][e], 0.9, 0.8)
            np.testing.assert_allclose(s["advantages"][:, e], expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(s["returns"], s["advantages"] + s["values"], rtol=1e-5, atol=1e-6)


def test_next_obs_at_episode_boundaries_is_terminal_observation():
    env = make_vec_env(CounterEnv, n_envs=3, seed=1)
    model = PPO("MlpPolicy", env, n_steps=7, batch_size=21, seed=0)
    source = PlusObs()
    model.learn(21, callback=RewardRelabelCallback(source))
    batch = source.batches[0]
    obs, next_obs = batch.obs, batch.next_obs
    # Within an episode s' is the next step's s; at the end it is the terminal state (t = EPISODE_LEN) of the same
    # episode, never the first observation of the next one.
    np.testing.assert_array_equal(next_obs[..., 0], obs[..., 0] + 1)
    np.testing.assert_array_equal(next_obs[..., 1], obs[..., 1])
    assert batch.dones.any()
    np.testing.assert_array_equal(batch.dones, next_obs[..., 0] == EPISODE_LEN)
    np.testing.assert_array_equal(batch.truncated, batch.dones & (obs[..., 1] % 2 == 0))
    # The step after an episode end starts the next episode.
    t, e = np.argwhere(batch.dones[:-1])[0]
    assert obs[t + 1, e, 0] == 0 and obs[t + 1, e, 1] == obs[t, e, 1] + 1


def test_source_with_wrong_shape_is_rejected():
    class Bad(RewardSource):
        def relabel(self, batch):
            return np.zeros(3), {}

    model = PPO("MlpPolicy", make_vec_env(CounterEnv, n_envs=1), n_steps=4, batch_size=4)
    with pytest.raises(ValueError, match="expected"):
        model.learn(4, callback=RewardRelabelCallback(Bad()))
