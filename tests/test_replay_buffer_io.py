"""Off-policy checkpoints carry the replay buffer (plain npz): a resumed SAC run keeps its transitions."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.buffers import ReplayBuffer

from rlgen.cli import main
from rlgen.common.errors import UserError
from rlgen.common.replay_buffer_io import FIELDS, load_replay_buffer, save_replay_buffer


def filled_buffer(size: int, transitions: int, obs_dim: int = 3) -> ReplayBuffer:
    obs_space = gym.spaces.Box(-1, 1, (obs_dim,), np.float64)
    buffer = ReplayBuffer(size, obs_space, gym.spaces.Box(-2, 2, (1,), np.float32), device="cpu")
    rng = np.random.default_rng(0)
    for t in range(transitions):
        buffer.add(rng.random((1, obs_dim)), rng.random((1, obs_dim)), rng.random((1, 1)), np.array([t]),
                   np.array([t % 7 == 0]), [{"TimeLimit.truncated": t % 5 == 0}])
    return buffer


@pytest.mark.parametrize("transitions", [13, 31])  # part-filled, and wrapped around (full)
def test_replay_buffer_round_trips_without_pickle(tmp_path, transitions):
    buffer = filled_buffer(20, transitions)
    path = save_replay_buffer(buffer, tmp_path / "replay.npz")
    with np.load(path, allow_pickle=False) as data:
        assert len(data["rewards"]) == min(transitions, 20)  # only the filled rows are written
    fresh = filled_buffer(20, 0)
    load_replay_buffer(fresh, path)
    assert (fresh.pos, fresh.full) == (buffer.pos, buffer.full)
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(fresh, name), getattr(buffer, name))


def test_replay_buffer_that_does_not_fit_is_a_clear_error(tmp_path):
    path = save_replay_buffer(filled_buffer(20, 13), tmp_path / "replay.npz")
    with pytest.raises(UserError, match="does not fit"):
        load_replay_buffer(filled_buffer(20, 0, obs_dim=4), path)
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(UserError, match="unreadable"):
        load_replay_buffer(filled_buffer(20, 0), tmp_path / "bad.npz")


def test_resumed_sac_run_keeps_its_replay_buffer(tmp_path, capsys):
    """300 steps, then resumed to 400: the last checkpoint's buffer holds all 400 transitions, not only the 100
    collected after the resume."""
    cfg = tmp_path / "sac.yaml"
    cfg.write_text("checkpoint_every: 1000000\neval_episodes: 1\nalgo_kwargs: {sac: {learning_starts: 100, "
                   "buffer_size: 1000, batch_size: 32}}\npolicy_kwargs: {net_arch: [16]}\n")
    args = ["expert", "--env", "Pendulum-v1", "--algo", "sac", "--config", str(cfg)]
    assert main([*args, "--steps", "300", "--out", str(tmp_path / "runs")]) == 0
    run = next((tmp_path / "runs").glob("expert-Pendulum-v1-s0-*"))
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    assert latest["step"] == 300 and latest["replay"] == "replay_300.npz"
    (run / "checkpoints" / "replay_350.npz").write_bytes(b"left by a save that was cut short")
    assert main([*args, "--resume", str(run), "--steps", "400"]) == 0
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    assert latest["step"] == 400
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "extras_400.pt", "latest.json", "model_400.zip", "replay_400.npz"]
    with np.load(run / "checkpoints" / latest["replay"], allow_pickle=False) as data:
        assert len(data["rewards"]) == 400 and int(data["pos"]) == 400
    capsys.readouterr()
