"""VIME attached to SB3: the bonus in the buffer, recomputed advantages, checkpoints, the CLI end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from sb3_contrib import TRPO
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env

from rlgen.agents.vime import VIME
from rlgen.common.checkpoint import load_torch
from rlgen.common.reward_relabel import RewardRelabelCallback
from rlgen.common.run_dir import saved_run_config
from rlgen.common.sb3_training import make_env
from tests.test_reward_relabel import gae


class Snapshot(BaseCallback):
    """Runs after VIME's relabelling: what the policy update sees, and what VIME computed."""

    def __init__(self, vime: VIME, relabel: RewardRelabelCallback) -> None:
        super().__init__()
        self.vime, self.relabel = vime, relabel
        self.rows: list[dict] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        b = self.model.rollout_buffer
        batch = self.relabel.last_batch
        self.rows.append({
            "buffer_rewards": b.rewards.copy(), "env_rewards": batch.rewards.copy(), "truncated": batch.truncated.copy(), "values": b.values.copy(), "starts": b.episode_starts.copy(),
            "advantages": b.advantages.copy(), "last_values": self.locals["values"].numpy().ravel().copy(),
            "dones": self.locals["dones"].copy(),
            "ig": None if self.vime.last_information_gain is None else self.vime.last_information_gain.copy(),
            "medians": list(self.vime.medians),
        })


@pytest.mark.parametrize("algo_cls", [PPO, TRPO])
def test_buffer_rewards_change_by_eta_times_normalised_information_gain(algo_cls):
    env = make_vec_env(lambda: make_env("rlgen/SparseMountainCar-v0"), n_envs=4, seed=0)
    model = algo_cls("MlpPolicy", env, n_steps=200, batch_size=200, seed=0, gamma=0.99, gae_lambda=0.95)
    vime = VIME(model, eta=0.5, n_updates=20, min_pool_size=500, seed=0)
    relabel = vime.callback()
    snap = Snapshot(vime, relabel)
    model.learn(3 * 800, callback=CallbackList([relabel, snap]))
    assert len(snap.rows) == 3
    first, *later = snap.rows
    assert first["ig"] is None  # no bonus before the BNN has been fitted once (as the original)
    for row in later:
        ig = row["ig"]
        assert ig.shape == (200, 4) and np.all(ig >= 0) and ig.std() > 0
        expected_bonus = 0.5 * ig / np.mean(row["medians"])
        plain = ~row["truncated"]  # SB3 adds its timeout bootstrap on truncated steps; the bonus sits on top
        np.testing.assert_allclose((row["buffer_rewards"] - row["env_rewards"])[plain], expected_bonus[plain],
                                   rtol=1e-4, atol=1e-6)
        for e in range(4):
            np.testing.assert_allclose(
                row["advantages"][:, e],
                gae(row["buffer_rewards"][:, e], row["values"][:, e], row["starts"][:, e], row["last_values"][e],
                    row["dones"][e], 0.99, 0.95), rtol=1e-3, atol=1e-4)
    assert len(later[-1]["medians"]) == 2  # one median per fitted batch


def test_max_normalised_gain_caps_outliers_at_a_multiple_of_the_median_window():
    env = make_vec_env(lambda: make_env("rlgen/SparseMountainCar-v0"), n_envs=2, seed=0)
    model = PPO("MlpPolicy", env, n_steps=300, batch_size=300, seed=0)
    vime = VIME(model, eta=0.1, n_updates=5, max_normalised_gain=100.0, seed=0)
    relabel = vime.callback()
    model.learn(600, callback=relabel)  # fits the BNN, so the next batch gets a bonus
    batch = relabel.last_batch
    gains = np.full(batch.shape, 2e-6)
    gains[7, 1], gains[8, 0] = 2e-2, 1e-4  # 10,000 and 50 times the median
    vime.information_gain = lambda *args, **kwargs: gains.ravel()
    vime.medians.clear()
    rewards, metrics = vime.relabel(batch)
    bonus = rewards - batch.rewards
    np.testing.assert_allclose(bonus[7, 1], 0.1 * 100)   # capped
    np.testing.assert_allclose(bonus[8, 0], 0.1 * 50)    # below the cap: unchanged
    np.testing.assert_allclose(np.delete(bonus.ravel(), [7 * 2 + 1, 8 * 2]), 0.1)
    assert metrics["vime/ig_normalised_max"] == pytest.approx(1e4)  # logged before the cap
    with pytest.raises(ValueError, match="max_normalised_gain"):
        VIME(model, max_normalised_gain=0)


def test_runs_saved_before_the_cap_resume_without_it(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    for path, vime in ((old, {"eta": 1e-4}), (new, {"eta": 1e-4, "max_normalised_gain": 100})):
        path.mkdir()
        (path / "config.json").write_text(json.dumps({"command": "vime", "seed": 0, "vime": vime}))
    assert saved_run_config(old)["vime"] == {"eta": 1e-4, "max_normalised_gain": None}
    assert saved_run_config(new)["vime"] == {"eta": 1e-4, "max_normalised_gain": 100}
    # new runs record the cap in their config.json (VIME's default, which the resolved config carries), so they
    # resume with it
    from rlgen.agents.rl_config import packaged_defaults

    assert packaged_defaults("vime")[0]["vime"]["max_normalised_gain"] == 100


def test_kl_chunk_gives_each_envs_consecutive_steps_one_shared_gain():
    env = make_vec_env(lambda: make_env("rlgen/SparseMountainCar-v0"), n_envs=3, seed=0)
    model = PPO("MlpPolicy", env, n_steps=150, batch_size=150, seed=0)
    vime = VIME(model, eta=0.5, n_updates=20, min_pool_size=400, kl_chunk=64, seed=0)
    ids = vime.chunk_ids(150, 3).reshape(150, 3)  # rows of a rollout flattened step-major, as SB3 stores them
    assert ids[0, 0] == ids[63, 0] != ids[64, 0] != ids[128, 0] and ids[149, 0] == ids[128, 0]  # 64, 64, 22
    assert len(np.unique(ids)) == 9 and not set(ids[:, 0]) & set(ids[:, 1])
    relabel = vime.callback()
    snap = Snapshot(vime, relabel)
    model.learn(2 * 450, callback=CallbackList([relabel, snap]))
    ig = snap.rows[-1]["ig"]
    for chunk in np.unique(ids):
        values = ig[ids == chunk]
        assert np.all(values == values[0]) and values[0] > 0
    assert len(np.unique(ig)) == 9


def test_state_round_trips_without_pickle(tmp_path):
    env = make_vec_env(lambda: make_env("rlgen/SparseMountainCar-v0"), n_envs=2, seed=0)
    model = PPO("MlpPolicy", env, n_steps=300, batch_size=300, seed=0)
    vime = VIME(model, n_updates=10, seed=1)
    vime.learn(1200)
    vime.save(tmp_path / "vime.pt")
    state = load_torch(tmp_path / "vime.pt")  # weights_only=True
    twin = VIME(model, n_updates=10, seed=99)
    twin.load_state_dict(state)
    assert list(twin.medians) == list(vime.medians) and twin.fitted and len(twin.pool) == len(vime.pool)
    for a, b in zip(twin.bnn.state_dict().values(), vime.bnn.state_dict().values()):
        assert torch.equal(a, b)
    obs = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    act = np.zeros((50, 1), np.float32)
    np.testing.assert_array_equal(twin.information_gain(obs, act, obs), vime.information_gain(obs, act, obs))
    # the pool's sampling goes on as it would have without the checkpoint, in the run and in the restored twin
    unsaved = np.random.default_rng(0)
    unsaved.bit_generator.state = state["rng"]
    assert twin._rng.integers(1 << 30) == vime._rng.integers(1 << 30) == unsaved.integers(1 << 30)


@pytest.mark.slow
def test_cli_vime_sparse_mountain_car_end_to_end(tmp_path):
    out = subprocess.run([sys.executable, "-m", "rlgen.run", "vime", "--env", "SparseMountainCar", "--steps", "15000",
                          "--n-envs", "5", "--seed", "1", "--out", str(tmp_path)],
                         check=False, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (run,) = tmp_path.glob("vime-SparseMountainCar-s1-*")
    assert str(run) in out.stdout
    config = json.loads((run / "config.json").read_text())
    assert config["env"] == "rlgen/SparseMountainCar-v0" and config["algo"] == "trpo" and config["vime"]["eta"] > 0
    with open(run / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    ig = [float(r["vime/ig_mean"]) for r in rows if r.get("vime/ig_mean")]
    assert len(ig) >= 1 and all(v >= 0 for v in ig)
    assert all(r["vime/bnn_elbo_loss"] for r in rows[1:])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 15000 and summary["env_steps_per_s"] > 0
    assert (run / "model.zip").is_file() and (run / "checkpoints" / "latest.json").is_file()


def test_same_seed_same_run(tmp_path):
    """A seed fixes a VIME run on CPU: every logged metric (timings aside) is identical."""
    from rlgen.cli import main

    def run(out):
        assert main(["vime", "--env", "SparseMountainCar", "--steps", "6000", "--n-envs", "4", "--seed", "7",
                     "--out", str(out)]) == 0
        (progress,) = out.glob("*/progress.csv")
        with open(progress) as f:
            return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in csv.DictReader(f)]

    first, second = run(tmp_path / "a"), run(tmp_path / "b")
    assert len(first) >= 2 and first == second
    assert any(r.get("vime/ig_mean") for r in first)
