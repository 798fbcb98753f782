"""The physics step shared by the MuJoCo tasks."""

from __future__ import annotations

import mujoco
import numpy as np


def step_and_refresh_com(model: mujoco.MjModel, data: mujoco.MjData, action: np.ndarray, n_steps: int) -> None:
    """Apply ``action`` as controls for ``n_steps`` physics steps, then refresh the centres of mass.

    ``mj_step`` leaves position-derived quantities (``subtree_com``, the poses the renderer draws) at the pre-step
    state; rllab read them after the step, so they are recomputed for the state the step reached.
    """
    action = np.asarray(action, dtype=np.float64)
    if action.shape != (model.nu,):
        raise ValueError(f"action must have shape ({model.nu},), got {action.shape}")
    data.ctrl[:] = action  # MuJoCo clamps to ctrlrange itself
    mujoco.mj_step(model, data, nstep=n_steps)
    mujoco.mj_kinematics(model, data)
    mujoco.mj_comPos(model, data)
