"""Environments: VIME's sparse-reward task suite, registered with gymnasium on import.

Each task is registered as ``rlgen/<Name>-v0`` with a 500-step horizon (VIME's ``max_path_length``)::

    import gymnasium as gym
    import rlgen  # registers the envs

    env = gym.make("rlgen/SparseHalfCheetah-v0")

The MuJoCo tasks render with ``render_mode="rgb_array"`` (set ``MUJOCO_GL=egl`` on a headless machine).
"""

from __future__ import annotations

import gymnasium as gym

from rlgen.common.errors import UserError

NAMESPACE = "rlgen"
VERSION = 0
MAX_EPISODE_STEPS = 500  # VIME's horizon for every task
# rllab bounds every observation by +-1e6 (rllab/envs/base.py, mujoco_env.py: BIG); finite bounds also keep
# gymnasium's checker from warning about unbounded spaces.
BIG = 1e6

# Short name -> "module:Class" under rlgen.envs (imported only when the env is made).
_ENTRY_POINTS: dict[str, str] = {
    "SparseHalfCheetah": "rlgen.envs.sparse_half_cheetah:SparseHalfCheetahEnv",
    "SparseMountainCar": "rlgen.envs.sparse_mountain_car:SparseMountainCarEnv",
    "SparseCartpoleSwingup": "rlgen.envs.sparse_cartpole_swingup:SparseCartpoleSwingupEnv",
    "SparseDoublePendulum": "rlgen.envs.sparse_double_pendulum:SparseDoublePendulumEnv",
    "SwimmerGather": "rlgen.envs.swimmer_gather:SwimmerGatherEnv",
}

SPARSE_TASKS: tuple[str, ...] = tuple(_ENTRY_POINTS)


def env_id(name: str) -> str:
    """The gymnasium id of an rlgen task: ``'SparseHalfCheetah'`` -> ``'rlgen/SparseHalfCheetah-v0'``."""
    return f"{NAMESPACE}/{name}-v{VERSION}"


def short_name(name_or_id: str) -> str:
    """``'rlgen/SparseHalfCheetah-v0'`` -> ``'SparseHalfCheetah'``; other names are returned unchanged."""
    for name in _ENTRY_POINTS:
        if name_or_id == env_id(name):
            return name
    return name_or_id


def _register_all() -> None:
    for name, entry_point in _ENTRY_POINTS.items():
        if env_id(name) not in gym.registry:  # importing twice (e.g. a reload) must not re-register
            gym.register(id=env_id(name), entry_point=entry_point, max_episode_steps=MAX_EPISODE_STEPS)


def resolve_env_id(name: str) -> str:
    """Short name ('SparseHalfCheetah') -> 'rlgen/SparseHalfCheetah-v0'; any id already in gymnasium's registry
    ('Hopper-v5', 'rlgen/SparseMountainCar-v0') passes through; anything else raises
    :class:`rlgen.common.errors.UserError` with one line naming the unknown env and listing the rlgen tasks.
    """
    if name in _ENTRY_POINTS:
        return env_id(name)
    if name in gym.registry:
        return name
    raise UserError(
        f"unknown env {name!r}: not an rlgen task nor a registered gymnasium id; rlgen tasks: {', '.join(SPARSE_TASKS)}"
    )


_register_all()

__all__ = ["MAX_EPISODE_STEPS", "SPARSE_TASKS", "env_id", "resolve_env_id", "short_name"]
