"""Tests of the sparse-reward task suite (rlgen.envs): API conformance, determinism and the reward definitions."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must be set before mujoco is imported

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import rlgen  # noqa: F401  (registers the envs)
from rlgen.common.errors import UserError
from rlgen.envs import SPARSE_TASKS, resolve_env_id
from rlgen.envs.swimmer_gather import APPLE, BOMB

MUJOCO_TASKS = ("SparseHalfCheetah", "SwimmerGather")


def make(name: str, **kwargs) -> gym.Env:
    return gym.make(resolve_env_id(name), **kwargs)


# ---- registry ------------------------------------------------------------------------------------------


def test_sparse_tasks_are_registered_with_vime_horizon() -> None:
    assert SPARSE_TASKS == (
        "SparseHalfCheetah",
        "SparseMountainCar",
        "SparseCartpoleSwingup",
        "SparseDoublePendulum",
        "SwimmerGather",
    )
    for name in SPARSE_TASKS:
        spec = gym.spec(f"rlgen/{name}-v0")
        assert spec.max_episode_steps == 500


def test_resolve_env_id() -> None:
    assert resolve_env_id("SparseHalfCheetah") == "rlgen/SparseHalfCheetah-v0"
    assert resolve_env_id("SwimmerGather") == "rlgen/SwimmerGather-v0"
    assert resolve_env_id("rlgen/SparseMountainCar-v0") == "rlgen/SparseMountainCar-v0"
    assert resolve_env_id("Hopper-v5") == "Hopper-v5"
    with pytest.raises(UserError) as excinfo:
        resolve_env_id("SparseWalker")
    message = str(excinfo.value)
    assert "SparseWalker" in message and "\n" not in message
    assert all(name in message for name in SPARSE_TASKS)


# ---- API conformance and determinism -------------------------------------------------------------------


@pytest.mark.parametrize("name", SPARSE_TASKS)
def test_env_checkers_pass_without_warnings(name: str) -> None:
    env = make(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, warn=True)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert messages == []
    assert env.observation_space.dtype == np.float32
    assert env.action_space.dtype == np.float32
    assert np.all(env.action_space.low == -1.0) and np.all(env.action_space.high == 1.0)
    env.close()


@pytest.mark.parametrize("name", SPARSE_TASKS)
def test_seeded_rollouts_are_deterministic(name: str) -> None:
    def rollout(seed: int) -> tuple[list[np.ndarray], list[float]]:
        env = make(name)
        env.action_space.seed(0)
        obs, _ = env.reset(seed=seed)
        observations, rewards = [obs], []
        for _ in range(40):
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            assert env.observation_space.contains(obs)
            observations.append(obs)
            rewards.append(reward)
            if terminated or truncated:
                break
        env.close()
        return observations, rewards

    obs_a, rew_a = rollout(seed=7)
    obs_b, rew_b = rollout(seed=7)
    assert len(obs_a) == len(obs_b) and rew_a == rew_b
    for a, b in zip(obs_a, obs_b):
        np.testing.assert_array_equal(a, b)
    obs_c, _ = rollout(seed=8)
    assert not np.array_equal(obs_a[0], obs_c[0])


@pytest.mark.parametrize(
    ("name", "com_slice"), [("SparseHalfCheetah", slice(17, 20)), ("SwimmerGather", slice(10, 13))]
)
def test_observed_com_is_that_of_the_state_after_the_step(name: str, com_slice: slice) -> None:
    import mujoco

    env = make(name).unwrapped
    env.reset(seed=1)
    env.action_space.seed(1)
    for _ in range(20):
        obs, *_ = env.step(env.action_space.sample())
    fresh = mujoco.MjData(env.model)
    fresh.qpos[:], fresh.qvel[:] = env.data.qpos, env.data.qvel
    mujoco.mj_forward(env.model, fresh)
    np.testing.assert_allclose(obs[com_slice], fresh.subtree_com[env.model.body("torso").id], atol=1e-5)


@pytest.mark.parametrize("name", MUJOCO_TASKS)
def test_mujoco_envs_render_rgb_arrays(name: str) -> None:
    import mujoco

    try:  # probe the GL backend on a trivial model: without one there is nothing to test here
        probe = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='1'/></worldbody></mujoco>")
        mujoco.Renderer(probe, 8, 8).close()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no OpenGL backend for MuJoCo ({exc})")
    env = make(name, render_mode="rgb_array", width=64, height=48)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
    assert frame.std() > 0  # an actual picture, not a blank buffer
    env.close()


# ---- SparseHalfCheetah ---------------------------------------------------------------------------------


def test_half_cheetah_timestep_and_observation_layout() -> None:
    env = make("SparseHalfCheetah").unwrapped
    assert env.dt == pytest.approx(0.01)
    assert env.frame_skip == 1 and env.model.opt.timestep == pytest.approx(0.01)
    assert env.metadata["render_fps"] == 100
    obs, _ = env.reset(seed=0)
    assert obs.shape == (20,)
    np.testing.assert_allclose(obs[:8], env.data.qpos[1:], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(obs[8:17], env.data.qvel, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(obs[17:], env.torso_com, rtol=1e-6, atol=1e-6)
    # rllab's reset noise: N(0, 0.01) on positions
    assert np.all(np.abs(env.data.qpos - env.init_qpos) < 0.06)


def test_half_cheetah_reward_is_one_only_past_five_metres() -> None:
    env = make("SparseHalfCheetah").unwrapped
    env.reset(seed=0)
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    obs, reward, terminated, truncated, info = env.step(zero)
    assert reward == 0.0 and not terminated and not truncated
    assert abs(info["torso_com_x"]) < 0.5

    def reward_at(x: float) -> tuple[float, np.ndarray, dict]:
        qpos = env.init_qpos.copy()
        qpos[0] = x
        env.set_state(qpos, np.zeros(env.model.nv))
        obs, reward, terminated, _, info = env.step(zero)
        assert not terminated
        return reward, obs, info

    reward, obs, info = reward_at(6.0)
    assert reward == 1.0
    assert info["torso_com_x"] > 5.0
    assert obs[17] == pytest.approx(info["torso_com_x"], abs=1e-4)  # the com is observed
    reward, _, info = reward_at(4.5)
    assert reward == 0.0 and info["torso_com_x"] < 5.0


# ---- SparseMountainCar ---------------------------------------------------------------------------------


def test_mountain_car_starts_in_the_valley() -> None:
    env = make("SparseMountainCar")
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        assert obs[0] == 0.0 and -1.0 <= obs[1] <= 1.0


def test_mountain_car_terminates_with_reward_one_at_the_goal() -> None:
    env = make("SparseMountainCar").unwrapped
    env.reset(seed=0)
    env.set_state(0.59, 1.0)
    obs, reward, terminated, truncated, info = env.step(np.array([1.0], dtype=np.float32))
    assert obs[0] >= 0.6 and terminated and not truncated and reward == 1.0 and info["goal_reached"]
    env.set_state(0.0, 0.5)
    obs, reward, terminated, _, _ = env.step(np.array([1.0], dtype=np.float32))
    assert reward == 0.0 and not terminated


def test_mountain_car_goal_is_reachable_by_pumping_energy() -> None:
    env = make("SparseMountainCar")
    env.reset(seed=3)
    obs, total = None, 0.0
    for _ in range(500):
        push = 1.0 if env.unwrapped.state[1] >= 0 else -1.0  # push along the velocity
        obs, reward, terminated, truncated, _ = env.step(np.array([push], dtype=np.float32))
        total += reward
        if terminated or truncated:
            break
    assert terminated and total == 1.0 and obs[0] >= 0.6


def test_mountain_car_conserves_energy_without_force() -> None:
    env = make("SparseMountainCar").unwrapped
    env.reset(seed=0)
    env.set_state(0.0, 2.0)
    heights = []
    for _ in range(100):
        env.step(np.zeros(1, dtype=np.float32))
        heights.append(env.height(env.state[0]))
    # a frictionless cart leaving the valley floor at speed 2 rises to v^2 / (2 g) = 0.2
    assert max(heights) == pytest.approx(0.2, rel=1e-3)


# ---- SparseCartpoleSwingup -----------------------------------------------------------------------------


def test_cartpole_starts_hanging_down() -> None:
    env = make("SparseCartpoleSwingup")
    for seed in range(10):
        obs, _ = env.reset(seed=seed)
        assert abs(obs[0]) <= 1.0
        assert abs(obs[2] - math.pi) <= 1.0 + 1e-6 and math.cos(obs[2]) < 0.0


def test_cartpole_reward_and_termination() -> None:
    env = make("SparseCartpoleSwingup").unwrapped
    env.reset(seed=0)
    zero = np.zeros(1, dtype=np.float32)
    env.set_state(0.0, 0.0, 0.1, 0.0)  # nearly upright, centred
    _, reward, terminated, _, _ = env.step(zero)
    assert reward == 1.0 and not terminated
    env.set_state(0.0, 0.0, math.pi, 0.0)  # hanging
    _, reward, terminated, _, _ = env.step(zero)
    assert reward == 0.0 and not terminated
    env.set_state(2.9, 4.0, 0.0, 0.0)  # upright but leaving the rail
    obs, reward, terminated, _, _ = env.step(np.ones(1, dtype=np.float32))
    assert obs[0] > 3.0 and terminated and reward == 0.0


def test_cartpole_conserves_energy_and_momentum_without_force() -> None:
    env = make("SparseCartpoleSwingup").unwrapped
    env.reset(seed=0)
    m, l, big_m, j, g = env.pole_mass, env.pole_com, env.cart_mass, env.pole_inertia, env.gravity

    def energy_momentum() -> tuple[float, float]:
        _, xd, th, thd = env.state
        energy = (
            0.5 * (big_m + m) * xd**2 - m * l * math.cos(th) * xd * thd + 0.5 * j * thd**2 + m * g * l * math.cos(th)
        )
        return energy, (big_m + m) * xd - m * l * math.cos(th) * thd

    env.set_state(0.0, 0.3, math.pi - 1.0, 0.0)
    e0, p0 = energy_momentum()
    for _ in range(100):
        env.step(np.zeros(1, dtype=np.float32))
        e, p = energy_momentum()
        assert e == pytest.approx(e0, abs=1e-4) and p == pytest.approx(p0, abs=1e-4)


# ---- SparseDoublePendulum ------------------------------------------------------------------------------


def test_double_pendulum_rewards_upright_not_hanging() -> None:
    env = make("SparseDoublePendulum").unwrapped
    obs, _ = env.reset(seed=0)
    assert obs[1] > 0.95 and obs[4] > 0.95  # both links start hanging (cos of angle ~ 1)
    zero = np.zeros(1, dtype=np.float32)
    _, reward, terminated, _, _ = env.step(zero)
    assert reward == 0.0 and not terminated
    env.set_state(math.pi, math.pi)  # both links straight up: tip at (0, 2)
    _, reward, _, _, info = env.step(zero)
    assert reward == 1.0 and info["tip_y"] == pytest.approx(2.0, abs=1e-3)
    env.set_state(math.pi, math.pi / 2)  # first link up, second horizontal: tip at (1, 1), sqrt(2) away
    assert env.step(zero)[1] == 0.0


def test_double_pendulum_torque_acts_on_the_second_joint() -> None:
    env = make("SparseDoublePendulum").unwrapped
    env.reset(seed=0)
    env.set_state(0.0, 0.0)
    obs, *_ = env.step(np.ones(1, dtype=np.float32))
    w1, w2 = obs[2], obs[5]
    assert w2 > 0.0 and w1 < 0.0  # the joint torque spins link 2 forward and, reacting, link 1 back


# ---- SwimmerGather -------------------------------------------------------------------------------------


def _swimmer_at_rest(env, heading: float = 0.0) -> np.ndarray:
    """Put the swimmer straight, still, at the origin facing ``heading``; return its com (x, y)."""
    qpos = np.zeros(env.model.nq)
    qpos[2] = heading
    env.set_state(qpos, np.zeros(env.model.nv))
    return env.robot_xy()


def test_swimmer_gather_places_objects_by_rllab_rules() -> None:
    env = make("SwimmerGather").unwrapped
    for seed in range(5):
        env.reset(seed=seed)
        objects = env.objects
        assert len(objects) == 16
        assert sum(kind == APPLE for _, _, kind in objects) == 8
        assert len({(x, y) for x, y, _ in objects}) == 16  # distinct cells
        for x, y, _ in objects:
            assert x in {-6, -4, -2, 0, 2, 4} and y in {-6, -4, -2, 0, 2, 4}
            assert x * x + y * y >= 4.0
    assert env.dt == pytest.approx(0.05)


def test_swimmer_gather_apple_gives_plus_one_bomb_minus_one() -> None:
    env = make("SwimmerGather").unwrapped
    env.reset(seed=0)
    zero = np.zeros(2, dtype=np.float32)
    x, y = _swimmer_at_rest(env)
    env.set_objects([(x + 0.5, y, APPLE), (5.0, 5.0, BOMB)])
    _, reward, terminated, _, info = env.step(zero)
    assert reward == 1.0 and not terminated and info["objects_left"] == 1
    assert env.objects == [(5.0, 5.0, BOMB)]  # the apple was collected
    _, reward, _, _, _ = env.step(zero)
    assert reward == 0.0  # and does not pay twice

    x, y = _swimmer_at_rest(env)
    env.set_objects([(x, y - 0.9, BOMB), (x + 1.2, y, APPLE)])  # the apple is just out of catch range
    _, reward, terminated, _, info = env.step(zero)
    assert reward == -1.0 and not terminated and info["objects_left"] == 1

    x, y = _swimmer_at_rest(env)
    env.set_objects([(x - 0.5, y + 0.5, APPLE)])
    _, reward, terminated, _, _ = env.step(zero)
    assert reward == 1.0 and terminated  # nothing left to gather


def test_swimmer_gather_sensor_reads_closest_object_ahead() -> None:
    env = make("SwimmerGather").unwrapped
    env.reset(seed=0)
    x, y = _swimmer_at_rest(env, heading=0.0)
    env.set_objects([(x + 3.0, y, APPLE)])  # straight ahead, 3 away: bin 5 of 10 (bearing 0 = -pi/2 + 5 * pi/10)
    apples, bombs = env.get_readings()
    expected = np.zeros(10)
    expected[5] = 1.0 - 3.0 / 6.0
    np.testing.assert_allclose(apples, expected)
    np.testing.assert_array_equal(bombs, np.zeros(10))
    # the observation carries the same readings after a step at rest
    obs, *_ = env.step(np.zeros(2, dtype=np.float32))
    np.testing.assert_allclose(obs[13:23], expected, atol=1e-5)
    np.testing.assert_allclose(obs[23:33], np.zeros(10), atol=1e-5)

    # out of range (6.5 > 6) and behind the robot (outside the pi span): nothing
    x, y = _swimmer_at_rest(env, heading=0.0)
    env.set_objects([(x + 6.5, y, APPLE), (x - 3.0, y, BOMB)])
    apples, bombs = env.get_readings()
    assert not apples.any() and not bombs.any()


def test_swimmer_gather_sensor_bins_follow_the_heading() -> None:
    env = make("SwimmerGather").unwrapped
    env.reset(seed=0)
    heading = 2.0
    x, y = _swimmer_at_rest(env, heading=heading)
    bin_width = math.pi / 10

    def at(bearing: float, dist: float) -> tuple[float, float]:
        return x + dist * math.cos(heading + bearing), y + dist * math.sin(heading + bearing)

    # bearings at bin centres, measured from the heading (counter-clockwise positive)
    apple_near = at(-math.pi / 2 + 1.5 * bin_width, 2.0)  # bin 1
    apple_far = at(-math.pi / 2 + 1.5 * bin_width, 4.0)  # bin 1 too, occluded by the nearer apple
    bomb = at(-math.pi / 2 + 8.5 * bin_width, 5.0)  # bin 8
    env.set_objects([(*apple_far, APPLE), (*apple_near, APPLE), (*bomb, BOMB)])
    apples, bombs = env.get_readings()
    expected_apples, expected_bombs = np.zeros(10), np.zeros(10)
    expected_apples[1] = 1.0 - 2.0 / 6.0
    expected_bombs[8] = 1.0 - 5.0 / 6.0
    np.testing.assert_allclose(apples, expected_apples, atol=1e-9)
    np.testing.assert_allclose(bombs, expected_bombs, atol=1e-9)


def test_mountain_car_left_end_is_a_wall_not_a_reward() -> None:
    env = make("SparseMountainCar").unwrapped
    env.reset(seed=0)
    env.set_state(-1.99, -2.0)
    obs, reward, terminated, _, _ = env.step(np.array([-1.0], dtype=np.float32))
    assert reward == 0.0 and not terminated
    assert obs[0] == pytest.approx(-2.0) and obs[1] >= 0.0


def test_short_name_inverts_env_id() -> None:
    from rlgen.envs import short_name

    for name in SPARSE_TASKS:
        assert short_name(resolve_env_id(name)) == name
    assert short_name("Hopper-v5") == "Hopper-v5"
