"""RewardSum: the composed reward is the weighted sum of its sources, each source learns from every rollout, and
checkpoints carry every source's state (GAIL + VIME through ``rlgen gail --vime-eta``)."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from rlgen.agents.gail import GAIL
from rlgen.agents.vime import VIME
from rlgen.common.reward_relabel import RewardRelabelCallback, RewardSource, TransitionBatch
from rlgen.common.reward_sum import RewardSum
from rlgen.imitation.demos import record_demos, save_demos
from tests.cli_helpers import fails_cleanly, succeeds


class Recording(RewardSource):
    """A source whose reward is known: ``scale`` times each observation's first entry; remembers what it saw."""

    def __init__(self, scale: float):
        self.scale, self.seen = scale, 0

    def relabel(self, batch):
        self.seen += 1
        return self.scale * batch.obs[..., 0], {"recording/calls": float(self.seen)}

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = int(state["seen"])


def batch(n_steps=5, n_envs=3, obs_dim=4, seed=0) -> TransitionBatch:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n_steps, n_envs, obs_dim)).astype(np.float32)
    return TransitionBatch(obs, rng.normal(size=(n_steps, n_envs, 1)).astype(np.float32), obs + 0.1,
                           rng.normal(size=(n_steps, n_envs)).astype(np.float32), np.zeros((n_steps, n_envs), bool),
                           np.zeros((n_steps, n_envs), bool), np.zeros((n_steps, n_envs), np.float32))


def test_the_composed_reward_is_the_weighted_sum_and_state_round_trips():
    a, b = Recording(1.0), Recording(-3.0)
    total = RewardSum({"a": (0.5, a), "b": (2.0, b)})
    data = batch()
    rewards, metrics = total.relabel(data)
    expected = 0.5 * data.obs[..., 0] + 2.0 * (-3.0 * data.obs[..., 0])
    np.testing.assert_allclose(rewards, expected, rtol=1e-6)
    assert rewards.shape == data.shape and rewards.dtype == np.float32
    assert metrics["reward/a_mean"] == pytest.approx(0.5 * data.obs[..., 0].mean(), rel=1e-5)
    assert metrics["reward/b_mean"] == pytest.approx(-6.0 * data.obs[..., 0].mean(), rel=1e-5)
    assert a.seen == b.seen == 1

    restored = RewardSum({"a": (0.5, Recording(1.0)), "b": (2.0, Recording(-3.0))})
    restored.load_state_dict(total.state_dict())
    assert restored.sources["a"][1].seen == restored.sources["b"][1].seen == 1
    with pytest.raises(KeyError, match="b"):
        RewardSum({"a": (1.0, Recording(1.0)), "b": (1.0, Recording(1.0))}).load_state_dict({"a": {"seen": 0}})
    with pytest.raises(ValueError, match="finite"):
        RewardSum({"a": (float("nan"), Recording(1.0))})
    with pytest.raises(ValueError, match="at least one"):
        RewardSum({})


def test_gail_plus_vime_on_a_real_rollout_is_their_weighted_sum():
    """Each source gets the rollout and the buffer gets ``r_GAIL + eta * bonus``; saving and loading both sources'
    states (weights_only) continues identically."""
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=128, n_epochs=1, seed=0)
    expert_obs = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    expert_act = np.random.default_rng(1).uniform(-2, 2, size=(50, 1)).astype(np.float32)

    def sources(seed: int):
        gail = GAIL(expert_obs, expert_act, env.observation_space, env.action_space, seed=seed)
        vime = VIME(model, eta=1.0, extrinsic=False, min_pool_size=10, seed=seed)
        return gail, vime

    gail, vime = sources(0)
    composed = RewardSum({"gail": (1.0, gail), "vime": (0.5, vime)})
    callback = RewardRelabelCallback(composed)
    model.learn(256, callback=callback)  # two rollouts: VIME's bonus starts once its BNN is fitted
    data = callback.last_batch
    assert data is not None and vime.fitted and gail.rounds == 2

    # The same rollout through fresh copies of both sources, restored from a checkpoint taken before it (each
    # restore from its own load: optimisers adopt the loaded tensors, so two of them must not share one load).
    buffer = io.BytesIO()
    torch.save(composed.state_dict(), buffer)

    def load() -> dict:
        buffer.seek(0)
        return torch.load(buffer, weights_only=True)

    g2, v2 = sources(123)
    again = RewardSum({"gail": (1.0, g2), "vime": (0.5, v2)})
    again.load_state_dict(load())
    g3, v3 = sources(7)
    g3.load_state_dict(load()["gail"])
    v3.load_state_dict(load()["vime"])
    total, _ = again.relabel(data)
    gail_part, _ = g3.relabel(data)
    vime_part, _ = v3.relabel(data)
    assert np.abs(vime_part).max() > 0  # the bonus is on
    np.testing.assert_allclose(total, gail_part + 0.5 * vime_part, rtol=1e-5, atol=1e-6)


def test_gail_with_vime_eta_from_the_command_line_resumes_both_sources(capsys, tmp_path):
    demos = tmp_path / "demos.npz"
    save_demos(demos, _pendulum_demos())
    runs = tmp_path / "runs"
    cfg = tmp_path / "small.yaml"
    cfg.write_text("n_envs: 2\ncheckpoint_every: 200\nalgo: ppo\n"
                   "algo_kwargs: {ppo: {n_steps: 100, batch_size: 100, n_epochs: 1}}\n"
                   "vime: {eta: 0.0, min_pool_size: 50, n_updates: 2}\n")
    fails_cleanly(capsys, ["gail", "--env", "Pendulum-v1", "--demos", str(demos), "--vime-eta", "inf",
                           "--out", str(runs)], "--vime-eta", "finite")
    bad = tmp_path / "bad.yaml"
    bad.write_text("vime: {eta: 1.0e-4, n_updatez: 2}\n")
    fails_cleanly(capsys, ["gail", "--env", "Pendulum-v1", "--demos", str(demos), "--config", str(bad),
                           "--out", str(runs)], "n_updatez")
    assert not runs.exists()
    succeeds(capsys, ["gail", "--env", "Pendulum-v1", "--demos", str(demos), "--steps", "400", "--vime-eta", "0.01",
                      "--config", str(cfg), "--out", str(runs)])
    (run,) = runs.glob("gail-Pendulum-v1-s0-*")
    assert json.loads((run / "config.json").read_text())["vime"]["eta"] == 0.01
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    state = torch.load(run / "checkpoints" / latest["extras"], weights_only=True)
    assert set(state["reward_source"]) == {"gail", "vime"}
    succeeds(capsys, ["gail", "--env", "Pendulum-v1", "--demos", str(demos), "--resume", str(run), "--steps", "600"])
    with open(run / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    rounds = [float(r["gail/rounds"]) for r in rows if r.get("gail/rounds")]
    assert rounds[-1] == 3  # the discriminator's count went on from the checkpoint
    assert any(float(r["reward/vime_mean"]) > 0 for r in rows if r.get("reward/vime_mean"))


def _pendulum_demos():
    class Swing:
        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            obs = np.asarray(obs)
            return np.clip(-2.0 * obs[..., 2:3], -2, 2).astype(np.float32), None

    return record_demos(Swing(), "Pendulum-v1", episodes=2, seed=0, progress=False)

