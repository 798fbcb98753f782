"""SwimmerGather: rllab's swimmer gathering apples and avoiding bombs, as a gymnasium MuJoCo env."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium import spaces, utils
from gymnasium.envs.mujoco import MujocoEnv

from rlgen.envs import BIG
from rlgen.envs.mujoco_step import step_and_refresh_com

APPLE, BOMB = 0, 1  # object kinds, as in rllab's gather_env.py

ASSET = os.path.join(os.path.dirname(__file__), "assets", "swimmer_gather.xml")
_APPLE_RGBA = np.array([0.0, 1.0, 0.0, 1.0])
_BOMB_RGBA = np.array([1.0, 0.0, 0.0, 1.0])

DEFAULT_CAMERA_CONFIG: dict[str, Any] = {
    # Looking straight down on the whole arena (objects lie within +-6, the walls at +-7).
    "type": mujoco.mjtCamera.mjCAMERA_FREE,
    "lookat": np.array([0.0, 0.0, 0.0]),
    "distance": 22.0,
    "elevation": -90.0,
    "azimuth": 90.0,
}


class SwimmerGatherEnv(MujocoEnv, utils.EzPickle):
    """The 3-link swimmer in an arena of apples (+1) and bombs (-1), seen through range sensors.

    Definition (rllab: ``rllab/envs/mujoco/gather/gather_env.py``, ``gather/swimmer_gather_env.py``,
    ``rllab/envs/mujoco/swimmer_env.py`` and ``vendor/mujoco_models/swimmer.xml``; VIME ran rllab's
    ``SwimmerGatherEnv()`` with its defaults, through ``NormalizedEnv``, horizon 500):

    - robot: rllab's swimmer (asset ``assets/swimmer_gather.xml``): 1 ms Euler physics steps, 50 per action
      (rllab's ``frame_skip`` numeric), so ``dt == 0.05``; action: 2 joint torques in ``[-1, 1]``, times 50
      (rllab's ``ctrlrange`` of +-50, as ``NormalizedEnv`` scaled it);
    - objects: at reset, ``n_apples`` (8) apples then ``n_bombs`` (8) bombs on distinct cells of the grid
      ``2 * randint(-activity_range / 2, activity_range / 2)`` per axis (for range 6: x, y in
      {-6, -4, ..., 4}, rllab's ``np.random.randint`` excluding the upper end), never closer than
      ``robot_object_spacing`` (2) to the origin, where the swimmer starts;
    - reward: after each step, every remaining object within ``catch_range`` (1, strict) of the torso
      subtree's centre of mass (x, y) is collected and removed: +1 per apple, -1 per bomb;
    - termination: when no object remains (rllab's ``done = len(self.objects) == 0``); the registered env
      truncates at 500 steps;
    - observation (33 floats, float32): rllab's swimmer observation ``qpos`` (5: x, y, heading, 2 joints),
      ``qvel`` (5) and the torso subtree's centre of mass (3), then 10 apple and 10 bomb sensor readings;
    - sensors: ``n_bins`` (10) bins evenly covering ``sensor_span`` (pi) centred on the heading ``qpos[2]``;
      an object at distance ``d <= sensor_range`` (6) from the centre of mass and at bearing ``b`` (relative to
      the heading, wrapped to [-pi, pi], ``|b| <= span / 2``) falls in bin ``int((b + span / 2) / (span / n_bins))``
      and reads ``1 - d / sensor_range``; each bin shows its closest object of each kind (rllab draws the
      objects far to near so near ones overwrite), 0 when empty;
    - reset of the swimmer: rllab's: ``qpos ~ N(0, 0.01^2)``, ``qvel ~ N(0, 0.1^2)`` per coordinate.

    Differences from the original:

    - sensors and catches are computed for all objects at once with numpy (``np.maximum.at`` per bin), which
      gives the same readings as rllab's sorted loop; an object exactly at bearing +span/2, for which rllab's
      bin index would overflow, goes to the last bin;
    - the objects are drawn as a uniformly random set of distinct grid cells in one call
      (``Generator.choice`` without replacement), the same distribution as rllab's rejection loop;
    - rllab added four wall boxes at +-(activity_range + 1) but, with ``collision="predefined"`` and no contact
      pairs, nothing ever collided; here contacts are disabled and the walls are drawn only;
    - the torso's centre of mass is recomputed right after the physics steps (rllab's ``model.forward()``);
    - rllab's gather env returned reward -10 when the inner robot env ended an episode; the swimmer never
      does, so that case is left out;
    - the objects are drawn as green/red spheres (MuJoCo sites) in ``render_mode="rgb_array"``, seen from above.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array", "depth_array"], "render_fps": 20}

    def __init__(
        self,
        n_apples: int = 8,
        n_bombs: int = 8,
        activity_range: float = 6.0,
        robot_object_spacing: float = 2.0,
        catch_range: float = 1.0,
        n_bins: int = 10,
        sensor_range: float = 6.0,
        sensor_span: float = np.pi,
        frame_skip: int = 50,
        render_mode: str | None = None,
        width: int = 480,
        height: int = 480,
        default_camera_config: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Build the env; the defaults are rllab's (see the class docstring)."""
        utils.EzPickle.__init__(
            self,
            n_apples,
            n_bombs,
            activity_range,
            robot_object_spacing,
            catch_range,
            n_bins,
            sensor_range,
            sensor_span,
            frame_skip,
            render_mode,
            width,
            height,
            default_camera_config,
            **kwargs,
        )
        self.n_apples = int(n_apples)
        self.n_bombs = int(n_bombs)
        self.activity_range = float(activity_range)
        self.robot_object_spacing = float(robot_object_spacing)
        self.catch_range = float(catch_range)
        self.n_bins = int(n_bins)
        self.sensor_range = float(sensor_range)
        self.sensor_span = float(sensor_span)
        self.n_objects = self.n_apples + self.n_bombs

        # rllab's grid of object positions, minus the cells too close to the robot's start.
        half = int(self.activity_range / 2)
        coords = 2.0 * np.arange(-half, half)
        grid = np.stack(np.meshgrid(coords, coords, indexing="ij"), axis=-1).reshape(-1, 2)
        self._cells = grid[np.sum(grid**2, axis=1) >= self.robot_object_spacing**2]
        if self.n_objects > len(self._cells):
            raise ValueError(
                f"{self.n_objects} objects do not fit on the {len(self._cells)} free grid cells "
                f"of activity_range={activity_range}"
            )
        self._obj_xy = np.zeros((self.n_objects, 2))
        self._obj_kind = np.repeat(np.array([APPLE, BOMB]), [self.n_apples, self.n_bombs])
        self._obj_alive = np.zeros(self.n_objects, dtype=bool)

        MujocoEnv.__init__(
            self,
            ASSET,
            frame_skip=int(frame_skip),
            observation_space=None,
            render_mode=render_mode,
            width=width,
            height=height,
            default_camera_config=DEFAULT_CAMERA_CONFIG if default_camera_config is None else default_camera_config,
            **kwargs,
        )
        self._torso_id = int(self.model.body("torso").id)
        self._ori_index = 2  # rllab's SwimmerGatherEnv.ORI_IND: qpos of the "rot" hinge
        self._site_ids = np.array([self.model.site(f"object{i}").id for i in range(self.n_objects)])
        self._robot_obs_dim = self.model.nq + self.model.nv + 3
        low = np.concatenate([np.full(self._robot_obs_dim, -BIG), np.zeros(2 * self.n_bins)])
        high = np.concatenate([np.full(self._robot_obs_dim, BIG), np.ones(2 * self.n_bins)])
        self.observation_space = spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        """Compile the swimmer with rllab's four walls and one marker site per object added."""
        tree = ET.parse(self.fullpath)
        worldbody = tree.getroot().find("worldbody")
        assert worldbody is not None
        wall = self.activity_range + 1
        wall_attrs = {"type": "box", "rgba": "0.8 0.9 0.8 1", "contype": "0", "conaffinity": "0"}
        for name, pos, size in (
            ("wall1", f"0 {-wall} 0", f"{wall + 0.5} 0.5 1"),
            ("wall2", f"0 {wall} 0", f"{wall + 0.5} 0.5 1"),
            ("wall3", f"{-wall} 0 0", f"0.5 {wall + 0.5} 1"),
            ("wall4", f"{wall} 0 0", f"0.5 {wall + 0.5} 1"),
        ):
            ET.SubElement(worldbody, "geom", dict(wall_attrs, name=name, pos=pos, size=size))
        for i in range(self.n_objects):
            # rllab's green/red balls: radius 0.5, resting on the floor; placed and hidden at run time.
            ET.SubElement(worldbody, "site", {"name": f"object{i}", "type": "sphere", "size": "0.5", "pos": "0 0 0.5"})
        model = mujoco.MjModel.from_xml_string(ET.tostring(tree.getroot(), encoding="unicode"))
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        return model, mujoco.MjData(model)

    # ---- objects ---------------------------------------------------------------------------------------

    @property
    def objects(self) -> list[tuple[float, float, int]]:
        """The remaining objects as rllab's ``(x, y, kind)`` tuples (kind: 0 apple, 1 bomb)."""
        return [
            (float(x), float(y), int(k))
            for (x, y), k in zip(self._obj_xy[self._obj_alive], self._obj_kind[self._obj_alive])
        ]

    def set_objects(self, objects: list[tuple[float, float, int]]) -> None:
        """Replace the objects with ``(x, y, kind)`` tuples (at most ``n_apples + n_bombs``; for tests)."""
        if len(objects) > self.n_objects:
            raise ValueError(f"at most {self.n_objects} objects, got {len(objects)}")
        self._obj_alive[:] = False
        for i, (x, y, kind) in enumerate(objects):
            if kind not in (APPLE, BOMB):
                raise ValueError(f"object kind must be {APPLE} (apple) or {BOMB} (bomb), got {kind}")
            self._obj_xy[i] = (x, y)
            self._obj_kind[i] = kind
            self._obj_alive[i] = True
        self._sync_markers()

    def _place_objects(self) -> None:
        cells = self.np_random.choice(len(self._cells), size=self.n_objects, replace=False)
        self._obj_xy = self._cells[cells].copy()
        self._obj_kind = np.repeat(np.array([APPLE, BOMB]), [self.n_apples, self.n_bombs])
        self._obj_alive[:] = True
        self._sync_markers()

    def _sync_markers(self) -> None:
        """Move the marker sites onto the objects; collected ones become invisible."""
        self.model.site_pos[self._site_ids, :2] = self._obj_xy
        rgba = np.where((self._obj_kind == APPLE)[:, None], _APPLE_RGBA, _BOMB_RGBA)
        rgba[:, 3] = self._obj_alive
        self.model.site_rgba[self._site_ids] = rgba

    # ---- sensing -------------------------------------------------------------------------------------------

    def robot_xy(self) -> np.ndarray:
        """The (x, y) of the torso subtree's centre of mass (rllab's ``get_body_com("torso")``), a copy."""
        return self.data.subtree_com[self._torso_id, :2].copy()

    def get_readings(self) -> tuple[np.ndarray, np.ndarray]:
        """rllab's range sensors: (apple readings, bomb readings), ``n_bins`` each, in [0, 1]."""
        readings = np.zeros((2, self.n_bins))
        alive = self._obj_alive
        if not alive.any():
            return readings[APPLE], readings[BOMB]
        delta = self._obj_xy[alive] - self.robot_xy()
        dist = np.hypot(delta[:, 0], delta[:, 1])
        bearing = np.arctan2(delta[:, 1], delta[:, 0]) - self.data.qpos[self._ori_index]
        bearing = np.mod(bearing, 2 * np.pi)
        bearing = np.where(bearing > np.pi, bearing - 2 * np.pi, bearing)  # [-pi, pi], as rllab wraps it
        half_span = 0.5 * self.sensor_span
        seen = (dist <= self.sensor_range) & (np.abs(bearing) <= half_span)
        bins = np.minimum(((bearing[seen] + half_span) / (self.sensor_span / self.n_bins)).astype(int), self.n_bins - 1)
        # The closest object of a kind in a bin has the highest reading: keep the per-bin maximum.
        np.maximum.at(readings, (self._obj_kind[alive][seen], bins), 1.0 - dist[seen] / self.sensor_range)
        return readings[APPLE], readings[BOMB]

    def _get_obs(self) -> np.ndarray:
        apples, bombs = self.get_readings()
        return np.concatenate(
            [self.data.qpos, self.data.qvel, self.data.subtree_com[self._torso_id], apples, bombs]
        ).astype(np.float32)

    # ---- gymnasium API -----------------------------------------------------------------------------------

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Swim for 0.05 s, then collect every object within ``catch_range``: +1 per apple, -1 per bomb."""
        step_and_refresh_com(self.model, self.data, action, self.frame_skip)

        delta = self._obj_xy - self.robot_xy()
        caught = self._obj_alive & (np.sum(delta**2, axis=1) < self.catch_range**2)
        n_apples = int(np.sum(caught & (self._obj_kind == APPLE)))
        n_bombs = int(np.sum(caught & (self._obj_kind == BOMB)))
        if caught.any():
            self._obj_alive &= ~caught
            self._sync_markers()
        terminated = not bool(self._obj_alive.any())
        info = {"apples": n_apples, "bombs": n_bombs, "objects_left": int(self._obj_alive.sum())}
        return self._get_obs(), float(n_apples - n_bombs), terminated, False, info

    def reset_model(self) -> np.ndarray:
        """New objects, and rllab's reset of the swimmer: Gaussian noise around the initial pose."""
        self._place_objects()
        qpos = self.init_qpos + self.np_random.normal(0.0, 0.01, size=self.model.nq)
        qvel = self.init_qvel + self.np_random.normal(0.0, 0.1, size=self.model.nv)
        self.set_state(qpos, qvel)
        return self._get_obs()

    def _get_reset_info(self) -> dict[str, Any]:
        return {"apples": 0, "bombs": 0, "objects_left": int(self._obj_alive.sum())}
