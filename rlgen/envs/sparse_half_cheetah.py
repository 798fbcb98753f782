"""SparseHalfCheetah: VIME's sparse-reward half-cheetah as a gymnasium MuJoCo env."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium import spaces, utils
from gymnasium.envs.mujoco import MujocoEnv

from rlgen.envs import BIG
from rlgen.envs.mujoco_step import step_and_refresh_com

DEFAULT_CAMERA_CONFIG: dict[str, Any] = {
    "type": mujoco.mjtCamera.mjCAMERA_TRACKING,  # follow the cheetah: it has to run 5 m to be rewarded
    "trackbodyid": 1,
    "distance": 4.0,
    "elevation": -15.0,
}


class SparseHalfCheetahEnv(MujocoEnv, utils.EzPickle):
    """The half-cheetah that is rewarded only once its torso is more than 5 m down the track.

    Definition (VIME: openai/vime ``envs/half_cheetah_env_x.py``, on rllab's
    ``rllab/envs/mujoco/half_cheetah_env.py``):

    - model: gymnasium's ``half_cheetah.xml``, which has the same bodies, joints, gears and
      ``timestep=0.01`` as rllab's ``vendor/mujoco_models/half_cheetah.xml``;
    - one 0.01 s physics step per action, no frame skip (rllab's XML declares no ``frame_skip``), so
      ``dt == 0.01`` (gymnasium's ``HalfCheetah-v5`` skips 5 frames: 0.05 s);
    - observation (20 floats, float32): ``qpos[1:]`` (8), ``qvel`` (9) and the centre of mass of the
      torso's subtree ``data.subtree_com[torso]`` (3; rllab's ``com_subtree``), in that order;
    - action: the 6 joint torques, ``[-1, 1]`` each (the XML's ``ctrlrange``; gears 30-120);
    - reward: ``1.0`` on every step after which the torso subtree's centre of mass has ``x > 5``, else ``0.0``;
    - never terminates; the registered env truncates at 500 steps (VIME's horizon);
    - reset: rllab's ``reset_mujoco``: ``qpos = init_qpos + N(0, 0.01^2)``, ``qvel = N(0, 0.1^2)``.

    Differences from the original:

    - the centre of mass is recomputed right after the physics step (rllab called ``model.forward()``
      there for the same reason; here only the kinematics and the centre-of-mass pass run), so the
      observation and the reward describe the state reached by the step, as in rllab;
    - gymnasium's XML sets the total mass with the deprecated ``settotalmass`` compiler attribute; it is
      removed before compiling and applied with ``mj_setTotalmass`` + ``mj_setConst`` instead, which gives
      the same masses and inertias without MuJoCo writing a deprecation warning to ``MUJOCO_LOG.TXT``;
    - rendering: ``render_mode="rgb_array"`` / ``"depth_array"`` through gymnasium's MuJoCo renderer
      (set ``MUJOCO_GL=egl`` on a headless machine); rllab had an on-screen viewer only.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array", "depth_array"], "render_fps": 100}

    def __init__(
        self,
        goal_x: float = 5.0,
        qpos_noise: float = 0.01,
        qvel_noise: float = 0.1,
        render_mode: str | None = None,
        width: int = 480,
        height: int = 480,
        default_camera_config: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Build the env.

        Args:
            goal_x: the torso centre-of-mass x beyond which a step is rewarded (VIME: 5).
            qpos_noise: std of the Gaussian noise added to the initial joint positions (rllab: 0.01).
            qvel_noise: std of the Gaussian initial joint velocities (rllab: 0.1).
            render_mode: ``None``, ``"rgb_array"`` or ``"depth_array"``.
            width: rendered image width in pixels.
            height: rendered image height in pixels.
            default_camera_config: overrides the tracking camera settings.
            **kwargs: passed on to :class:`gymnasium.envs.mujoco.MujocoEnv`.
        """
        utils.EzPickle.__init__(
            self, goal_x, qpos_noise, qvel_noise, render_mode, width, height, default_camera_config, **kwargs
        )
        self.goal_x = float(goal_x)
        self.qpos_noise = float(qpos_noise)
        self.qvel_noise = float(qvel_noise)
        MujocoEnv.__init__(
            self,
            "half_cheetah.xml",  # resolved against gymnasium's bundled MuJoCo assets
            frame_skip=1,
            observation_space=None,
            render_mode=render_mode,
            width=width,
            height=height,
            default_camera_config=DEFAULT_CAMERA_CONFIG if default_camera_config is None else default_camera_config,
            **kwargs,
        )
        self._torso_id = int(self.model.body("torso").id)
        obs_dim = (self.model.nq - 1) + self.model.nv + 3
        self.observation_space = spaces.Box(-BIG, BIG, shape=(obs_dim,), dtype=np.float32)

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        """Compile gymnasium's cheetah XML, applying its ``settotalmass`` after compiling (see class doc)."""
        with open(self.fullpath, encoding="utf-8") as f:
            xml = f.read()
        match = re.search(r'\s+settotalmass="([^"]+)"', xml)
        if match is not None:
            xml = xml.replace(match.group(0), "")
        model = mujoco.MjModel.from_xml_string(xml)
        data = mujoco.MjData(model)
        if match is not None:
            mujoco.mj_setTotalmass(model, float(match.group(1)))
            mujoco.mj_setConst(model, data)
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        return model, data

    @property
    def torso_com(self) -> np.ndarray:
        """The centre of mass of the torso's subtree (the whole cheetah), world frame, a copy."""
        return self.data.subtree_com[self._torso_id].copy()

    def _get_obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos[1:], self.data.qvel, self.data.subtree_com[self._torso_id]]).astype(
            np.float32
        )

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply the torques for one 0.01 s physics step; reward 1 if the torso com is past ``goal_x``."""
        step_and_refresh_com(self.model, self.data, action, self.frame_skip)
        com_x = float(self.data.subtree_com[self._torso_id, 0])
        reward = 1.0 if com_x > self.goal_x else 0.0
        info = {"torso_com_x": com_x}
        return self._get_obs(), reward, False, False, info

    def reset_model(self) -> np.ndarray:
        """rllab's reset: small Gaussian noise around the initial pose, Gaussian initial velocities."""
        qpos = self.init_qpos + self.np_random.normal(0.0, self.qpos_noise, size=self.model.nq)
        qvel = self.init_qvel + self.np_random.normal(0.0, self.qvel_noise, size=self.model.nv)
        self.set_state(qpos, qvel)
        return self._get_obs()

    def _get_reset_info(self) -> dict[str, Any]:
        return {"torso_com_x": float(self.data.subtree_com[self._torso_id, 0])}
