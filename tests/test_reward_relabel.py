"""The one reward-relabelling mechanism: rewards replaced in SB3's buffer, advantages recomputed, s' right at
episode ends, for PPO, TRPO and A2C."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from sb3_contrib import TRPO
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.utils import obs_as_tensor

from rlgen.common.normalization import ReturnScale
from rlgen.common.reward_relabel import EnvReward, RewardRelabelCallback, RewardSource, TransitionBatch
from rlgen.common.sb3_training import ProgressAndCheckpoint

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
    """Runs after the relabel callback: copies what the policy update will see, and V(s') of every transition
    (s' as the relabel callback recorded it: the terminal observation at episode ends)."""

    def __init__(self, relabel: RewardRelabelCallback | None = None) -> None:
        super().__init__()
        self.relabel = relabel
        self.snapshots: list[dict[str, np.ndarray]] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        b = self.model.rollout_buffer
        snapshot = {k: np.copy(getattr(b, k)) for k in ("rewards", "values", "episode_starts", "advantages", "returns")}
        snapshot |= {"last_values": self.locals["values"].cpu().numpy().ravel().copy(),
                     "dones": np.copy(self.locals["dones"])}
        if self.relabel is not None:
            next_obs = self.relabel.last_batch.next_obs
            with torch.no_grad():
                values = self.model.policy.predict_values(obs_as_tensor(next_obs.reshape(-1, 2), self.model.device))
            snapshot["next_values"] = values.cpu().numpy().reshape(next_obs.shape[:2])
        self.snapshots.append(snapshot)


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
    source = PlusObs()
    relabel = RewardRelabelCallback(source)
    snap = BufferSnapshot(relabel)
    model.learn(32, callback=CallbackList([relabel, snap]))
    assert len(source.batches) == len(snap.snapshots) == 2
    assert any(batch.truncated.any() for batch in source.batches)
    for batch, s in zip(source.batches, snap.snapshots):
        assert batch.shape == (8, 2)
        np.testing.assert_allclose(batch.rewards, 0.5)  # the env's own reward, before any bootstrap
        # Buffer reward = env reward + bonus + SB3's timeout bootstrap gamma * V(terminal obs) on truncated steps.
        expected = 0.5 + 10.0 * batch.obs[..., 0] + np.where(batch.truncated, 0.9 * s["next_values"], 0.0)
        np.testing.assert_allclose(s["rewards"], expected, rtol=1e-5, atol=1e-6)
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


def test_return_scale_divides_by_the_std_of_discounted_returns_reset_at_episode_ends():
    rng = np.random.default_rng(0)
    gamma, n_steps, n_envs = 0.9, 6, 3
    scale = ReturnScale(gamma, n_envs)
    rollouts = [(rng.normal(size=(n_steps, n_envs)) * 40.0, rng.random((n_steps, n_envs)) < 0.3) for _ in range(3)]
    seen = []  # discounted returns written out env by env, carried across rollouts
    running = np.zeros(n_envs)
    for rewards, dones in rollouts:
        for t in range(n_steps):
            for e in range(n_envs):
                running[e] = gamma * running[e] + rewards[t, e]
                seen.append(running[e])
                if dones[t, e]:
                    running[e] = 0.0
        scaled = scale(rewards.astype(np.float32), dones)
        np.testing.assert_allclose(scaled, rewards / np.std(seen), rtol=1e-4)
    assert scale.std > 10  # rewards of scale 40 come out of unit scale
    restored = ReturnScale(gamma, n_envs)
    restored.load_state_dict(scale.state_dict())
    assert restored.std == scale.std and restored.count == len(seen) and not restored.returns.any()


def test_relabel_with_return_scale_keeps_the_timeout_bootstrap_and_scales_the_rest():
    env = make_vec_env(CounterEnv, n_envs=2, seed=0)
    model = PPO("MlpPolicy", env, n_steps=8, batch_size=16, seed=0, gamma=0.9, gae_lambda=0.8)
    source, scale = PlusObs(), ReturnScale(0.9, 2)
    relabel = RewardRelabelCallback(source, scale)
    snap = BufferSnapshot(relabel)
    model.learn(32, callback=CallbackList([relabel, snap]))
    batch, s = source.batches[-1], snap.snapshots[-1]
    assert batch.truncated.any() and scale.std > 1.5
    # The bootstrap is in the critic's (scaled) units already: it is kept as SB3 computed it, unscaled again.
    expected = (0.5 + 10.0 * batch.obs[..., 0]) / scale.std + np.where(batch.truncated, 0.9 * s["next_values"], 0.0)
    np.testing.assert_allclose(s["rewards"], expected, rtol=1e-5, atol=1e-6)
    for e in range(2):
        expected = gae(s["rewards"][:, e], s["values"][:, e], s["episode_starts"][:, e], s["last_values"][e],
                       s["dones"][e], 0.9, 0.8)
        np.testing.assert_allclose(s["advantages"][:, e], expected, rtol=1e-4, atol=1e-5)


def test_env_reward_source_passes_the_env_reward_through():
    env = make_vec_env(CounterEnv, n_envs=2, seed=0)
    model = PPO("MlpPolicy", env, n_steps=8, batch_size=16, seed=0)
    snap = BufferSnapshot()
    model.learn(8, callback=CallbackList([RewardRelabelCallback(EnvReward()), snap]))
    rewards = snap.snapshots[0]["rewards"]
    np.testing.assert_allclose(rewards[0], 0.5)  # the first step of each env's first episode: no bootstrap


def test_checkpoints_see_the_reward_source_and_the_policy_at_the_same_rollout():
    """A checkpoint must not hold a reward source fitted on a rollout that its policy has not been trained on:
    a run resumed from it would collect that rollout again and fit the source on it twice."""
    env = make_vec_env(CounterEnv, n_envs=2, seed=0)
    model = A2C("MlpPolicy", env, n_steps=4, seed=0)
    source = PlusObs()
    saved: list[tuple[int, int]] = []  # (policy updates, rollouts the source was fitted on) at each checkpoint
    checkpoint = ProgressAndCheckpoint(lambda: saved.append((model._n_updates, len(source.batches))), every=8,
                                       total=48, start=0)
    model.learn(48, callback=CallbackList([RewardRelabelCallback(source), checkpoint]))
    assert len(saved) >= 3
    assert all(updates == fitted for updates, fitted in saved), saved


def test_checkpoints_also_come_by_the_clock():
    """A slow run checkpoints every ``max_interval_s`` seconds even when ``every`` env steps have not passed (here
    never: every=0), and never twice at the same step."""
    env = make_vec_env(CounterEnv, n_envs=2, seed=0)
    model = A2C("MlpPolicy", env, n_steps=4, seed=0)
    by_clock: list[int] = []
    model.learn(24, callback=ProgressAndCheckpoint(lambda: by_clock.append(model.num_timesteps), every=0, total=24,
                                                   start=0, max_interval_s=0.0))
    assert by_clock == [8, 16]  # at the start of the 2nd and 3rd rollouts: the 1st has nothing to save yet
    never: list[int] = []
    model.learn(24, callback=ProgressAndCheckpoint(lambda: never.append(model.num_timesteps), every=0, total=24,
                                                   start=0, max_interval_s=3600.0))
    assert never == []
