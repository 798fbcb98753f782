"""Demonstration files: round trip, rejection of files that do not fit the env, the imitation library's npz,
trajectory selection and the paper's subsampling."""

from __future__ import annotations

import zipfile

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from rlgen.common.errors import UserError
from rlgen.imitation.demos import Demonstrations, demos_from_episodes, load_demos, record_demos, save_demos


class CartPoleController:
    """A hand-written CartPole expert (push towards where the pole is falling), with SB3's predict."""

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        obs = np.asarray(obs)
        action = (obs[..., 2] + 0.5 * obs[..., 3] > 0).astype(np.int64)
        return action, None


def cartpole_spaces():
    env = gym.make("CartPole-v1")
    return env.observation_space, env.action_space


def pendulum_spaces():
    env = gym.make("Pendulum-v1")
    return env.observation_space, env.action_space


@pytest.fixture(scope="module")
def cartpole_demos() -> Demonstrations:
    return record_demos(CartPoleController(), "CartPole-v1", episodes=3, seed=0, progress=False)


def box_episode(length: int, rng: np.random.Generator, terminated: bool) -> dict[str, np.ndarray]:
    obs = rng.uniform(-1, 1, size=(length + 1, 3)).astype(np.float32)  # within Pendulum's bounds
    done = np.zeros(length, dtype=bool)
    done[-1] = True
    return {"obs": obs[:-1], "next_obs": obs[1:], "actions": rng.uniform(-2, 2, size=(length, 1)),
            "rewards": rng.normal(size=length), "terminated": done & terminated, "truncated": done & (not terminated)}


def test_recorded_demos_are_whole_consistent_episodes(cartpole_demos):
    d = cartpole_demos
    assert d.n_episodes == 3 and d.env_id == "CartPole-v1"
    assert d.actions.dtype == np.int64 and d.obs.dtype == np.float32
    np.testing.assert_array_equal(d.episode_lengths, [np.sum(d.episode_index == i) for i in range(3)])
    # Within an episode s' is the next step's s; episodes end exactly at terminated/truncated flags.
    ends = np.append(d.episode_starts[1:] - 1, d.n_transitions - 1)
    inside = np.setdiff1d(np.arange(d.n_transitions - 1), ends)
    np.testing.assert_array_equal(d.next_obs[inside], d.obs[inside + 1])
    assert np.all(d.terminated[ends] | d.truncated[ends])
    np.testing.assert_allclose(d.episode_returns, d.episode_lengths)  # CartPole pays 1 per step


def test_round_trip_without_pickle(tmp_path, cartpole_demos):
    path = save_demos(tmp_path / "demos.npz", cartpole_demos)
    with np.load(path, allow_pickle=False) as raw:  # plain arrays only
        assert int(raw["format_version"]) == 1 and str(raw["env_id"]) == "CartPole-v1"
    loaded = load_demos(path, "CartPole-v1", *cartpole_spaces())
    for key in ("obs", "next_obs", "actions", "rewards", "terminated", "truncated", "episode_starts"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(cartpole_demos, key))
        assert getattr(loaded, key).dtype == getattr(cartpole_demos, key).dtype
    assert loaded.env_id == "CartPole-v1"


def test_box_round_trip_and_truncation_flags(tmp_path):
    rng = np.random.default_rng(0)
    episodes = [box_episode(5, rng, True), box_episode(7, rng, False)]
    demos = demos_from_episodes(episodes, "Pendulum-v1", pendulum_spaces()[1])
    loaded = load_demos(save_demos(tmp_path / "p.npz", demos), "Pendulum-v1", *pendulum_spaces())
    np.testing.assert_array_equal(loaded.episode_starts, [0, 5])
    assert loaded.terminated.tolist() == [False] * 4 + [True] + [False] * 7
    assert loaded.truncated.tolist() == [False] * 11 + [True]
    np.testing.assert_allclose(loaded.actions, np.concatenate([e["actions"] for e in episodes]), rtol=1e-6)


def test_demos_for_another_env_are_rejected(tmp_path, cartpole_demos):
    path = save_demos(tmp_path / "cartpole.npz", cartpole_demos)
    with pytest.raises(UserError, match="recorded on CartPole-v1, not Pendulum-v1"):
        load_demos(path, "Pendulum-v1", *pendulum_spaces())
    # Without the env id (as for imitation-library files) the spaces still catch it.
    with pytest.raises(UserError, match="another env"):
        load_demos(path, None, *pendulum_spaces())
    obs_space, _ = cartpole_spaces()
    with pytest.raises(UserError, match="another env"):
        load_demos(path, None, obs_space, spaces.Discrete(1))  # action 1 is outside Discrete(1)
    with pytest.raises(UserError, match="another env"):
        load_demos(path, None, obs_space, spaces.Box(-1, 1, (1,)))


def test_out_of_bounds_actions_are_rejected(tmp_path):
    rng = np.random.default_rng(1)
    episode = box_episode(4, rng, True)
    episode["actions"] = episode["actions"] * 10  # Pendulum's torque is within [-2, 2]
    path = save_demos(tmp_path / "bad.npz", demos_from_episodes([episode], "Pendulum-v1", pendulum_spaces()[1]))
    with pytest.raises(UserError, match="bounds"):
        load_demos(path, "Pendulum-v1", *pendulum_spaces())


def write_arrays(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def valid_arrays(demos: Demonstrations) -> dict[str, np.ndarray]:
    return {"format_version": np.asarray(1), "env_id": np.asarray(demos.env_id), "obs": demos.obs,
            "next_obs": demos.next_obs, "actions": demos.actions, "rewards": demos.rewards,
            "terminated": demos.terminated, "truncated": demos.truncated, "episode_starts": demos.episode_starts}


@pytest.mark.parametrize("case,match", [
    ("missing", "does not exist"),
    ("directory", "directory"),
    ("garbage", "not a readable npz"),
    ("truncated", "corrupt|not a readable"),
    ("single_array", "single array"),
    ("unknown_keys", "neither rlgen demos"),
    ("missing_key", "lacks array"),
    ("future_version", "format version 2"),
    ("object_array", "pickle"),
    ("short_rewards", "inconsistent"),
    ("bad_starts", "episode_starts"),
    ("flag_inside_episode", "inside an episode"),
    ("nan_obs", "NaN"),
    ("inf_rewards", "infinite values in rewards"),
    ("version_not_a_number", "corrupt"),
])
def test_bad_files_give_one_line_user_errors(tmp_path, cartpole_demos, case, match):
    path = tmp_path / "demos.npz"
    arrays = valid_arrays(cartpole_demos)
    if case == "missing":
        path = tmp_path / "nothing.npz"
    elif case == "directory":
        path = tmp_path
    elif case == "garbage":
        path.write_bytes(b"this is not an npz file")
    elif case == "truncated":
        save_demos(path, cartpole_demos)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif case == "single_array":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    elif case == "unknown_keys":
        write_arrays(path, x=np.zeros(3))
    elif case == "missing_key":
        del arrays["next_obs"]
        write_arrays(path, **arrays)
    elif case == "future_version":
        write_arrays(path, **{**arrays, "format_version": np.asarray(2)})
    elif case == "object_array":
        write_arrays(path, **{**arrays, "rewards": np.array([{"r": 1}] * len(arrays["rewards"]), dtype=object)})
    elif case == "short_rewards":
        write_arrays(path, **{**arrays, "rewards": arrays["rewards"][:-1]})
    elif case == "bad_starts":
        write_arrays(path, **{**arrays, "episode_starts": np.array([0, 10**9])})
    elif case == "flag_inside_episode":
        terminated = arrays["terminated"].copy()
        terminated[3] = True
        write_arrays(path, **{**arrays, "terminated": terminated})
    elif case == "nan_obs":
        obs = arrays["obs"].copy()
        obs[0, 0] = np.nan
        write_arrays(path, **{**arrays, "obs": obs})
    elif case == "inf_rewards":
        write_arrays(path, **{**arrays, "rewards": np.where(np.arange(len(arrays["rewards"])) == 2, np.inf, 1.0)})
    elif case == "version_not_a_number":
        write_arrays(path, **{**arrays, "format_version": np.array([1, 1])})
    with pytest.raises(UserError, match=match) as info:
        load_demos(path, "CartPole-v1", *cartpole_spaces())
    assert "\n" not in str(info.value)


def test_nan_continuous_actions_are_rejected():
    """NaN compares False with the action bounds, so the finiteness check is what catches it."""
    n = 5
    demos = Demonstrations(obs=np.zeros((n, 3), np.float32), next_obs=np.zeros((n, 3), np.float32),
                           actions=np.zeros((n, 1), np.float32), rewards=np.zeros(n, np.float32),
                           terminated=np.zeros(n, bool), truncated=np.eye(1, n, n - 1, dtype=bool)[0],
                           episode_starts=np.array([0]), env_id="Pendulum-v1")
    demos.validate()
    demos.actions[2, 0] = np.nan
    with pytest.raises(UserError, match="infinite values in actions"):
        demos.validate()


def imitation_npz(path, trajectories: list[tuple[np.ndarray, np.ndarray, np.ndarray, bool]], with_infos=True):
    """Write trajectories as imitation's npz: obs has len+1 rows per trajectory, indices are split points."""
    arrays = {
        "obs": np.concatenate([t[0] for t in trajectories]),
        "acts": np.concatenate([t[1] for t in trajectories]),
        "rews": np.concatenate([t[2] for t in trajectories]),
        "terminal": np.array([t[3] for t in trajectories]),
        "indices": np.cumsum([len(t[1]) for t in trajectories[:-1]]),
    }
    if with_infos:  # an object array of dicts: needs pickle, so it must never be read
        arrays["infos"] = np.array([{} for _ in range(len(arrays["acts"]))], dtype=object)
    np.savez_compressed(path, **arrays)
    return path


def test_reads_imitation_library_npz_without_unpickling(tmp_path):
    rng = np.random.default_rng(0)
    trajs = []
    for length, terminal in ((4, True), (6, False), (3, True)):
        obs = rng.uniform(-0.04, 0.04, size=(length + 1, 4)).astype(np.float32)
        trajs.append((obs, rng.integers(0, 2, size=length), np.ones(length), terminal))
    path = imitation_npz(tmp_path / "imitation.npz", trajs)
    with pytest.raises(ValueError):  # the file really does hold a pickled object array
        np.load(path, allow_pickle=False)["infos"]
    demos = load_demos(path, "CartPole-v1", *cartpole_spaces())
    assert demos.env_id == "" and demos.n_episodes == 3 and demos.n_transitions == 13
    np.testing.assert_array_equal(demos.episode_starts, [0, 4, 10])
    for i, (obs, acts, _, terminal) in enumerate(trajs):
        sl = slice(demos.episode_starts[i], demos.episode_starts[i] + len(acts))
        np.testing.assert_array_equal(demos.obs[sl], obs[:-1])
        np.testing.assert_array_equal(demos.next_obs[sl], obs[1:])
        np.testing.assert_array_equal(demos.actions[sl], acts)
        assert demos.terminated[sl][-1] == terminal and demos.truncated[sl][-1] == (not terminal)
    np.testing.assert_allclose(demos.episode_returns, [4, 6, 3])


def test_imitation_npz_that_does_not_fit_is_rejected(tmp_path):
    rng = np.random.default_rng(0)
    trajs = [(rng.normal(size=(5, 3)).astype(np.float32), rng.uniform(-1, 1, size=(4, 1)), np.zeros(4), True)]
    path = imitation_npz(tmp_path / "pendulum_like.npz", trajs, with_infos=False)
    with pytest.raises(UserError, match="another env"):
        load_demos(path, "CartPole-v1", *cartpole_spaces())
    broken = {"obs": np.zeros((5, 4)), "acts": np.zeros(4, dtype=np.int64), "indices": np.array([], dtype=np.int64),
              "terminal": np.array([True, False])}
    np.savez(tmp_path / "broken.npz", **broken)
    with pytest.raises(UserError, match="inconsistent"):
        load_demos(tmp_path / "broken.npz")


def test_first_episodes_and_subsampling():
    rng = np.random.default_rng(0)
    lengths = [100, 57, 3, 80]
    demos = demos_from_episodes([box_episode(n, rng, False) for n in lengths], "Pendulum-v1", pendulum_spaces()[1])
    two = demos.first_episodes(2)
    assert two.n_episodes == 2 and two.n_transitions == 157
    np.testing.assert_array_equal(two.obs, demos.obs[:157])
    with pytest.raises(UserError, match="fewer than the 5"):
        demos.first_episodes(5)

    every = 20
    obs, actions = demos.subsample(every, np.random.default_rng(3))
    # Recover which transitions were kept: each episode keeps steps offset, offset + 20, ... with one offset.
    kept = np.flatnonzero((demos.obs[:, None, :] == obs[None, :, :]).all(-1).any(1))
    np.testing.assert_array_equal(demos.actions[kept], actions)
    step = kept - demos.episode_starts[demos.episode_index[kept]]
    for i in range(demos.n_episodes):
        steps = step[demos.episode_index[kept] == i]
        if len(steps):
            offset = steps[0]
            assert 0 <= offset < every
            np.testing.assert_array_equal(steps, np.arange(offset, lengths[i], every))
    # The offsets are random: different seeds pick different pairs.
    other, _ = demos.subsample(every, np.random.default_rng(4))
    assert other.shape != obs.shape or not np.array_equal(other, obs)
    assert len(demos.subsample(1, np.random.default_rng(0))[0]) == demos.n_transitions


def test_loaded_zip_member_damage_is_a_user_error(tmp_path, cartpole_demos):
    path = save_demos(tmp_path / "demos.npz", cartpole_demos)
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    with zipfile.ZipFile(path, "w") as zf:  # obs.npy replaced by bytes that are no .npy file
        for name, data in members.items():
            zf.writestr(name, b"garbage" if name == "obs.npy" else data)
    with pytest.raises(UserError, match="corrupt"):
        load_demos(path)
