"""SparseMountainCar: VIME's sparse-reward mountain car (rllab's Box2D cart on a cosine track), in numpy."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlgen.envs import BIG
from rlgen.envs.integrators import rk4


class SparseMountainCarEnv(gym.Env[np.ndarray, np.ndarray]):
    """A cart on a valley-shaped track, rewarded (once) for reaching the goal up the right slope.

    Definition (VIME: openai/vime ``envs/mountain_car_env_x.py``; rllab:
    ``rllab/envs/box2d/mountain_car_env.py`` and ``rllab/envs/box2d/models/mountain_car.xml.mako``):

    - track: rllab's ``sine_chain`` of height 1 and width 4 on a body at y = 1, i.e. the curve
      ``y = 1 - cos(pi x / 2)`` for ``x`` in ``[-2, 2]`` (valley floor at x = 0, crests of height 2 at x = +-2);
    - cart: mass 0.4 (a 0.4 x 0.2 box of density 5), gravity 10 (Box2D's default);
    - action: one float in ``[-1, 1]``, the force in newtons along the cart's own x axis, i.e. along the
      track (rllab: ``ctrllimit="-1,1"``, ``direction="1,0"`` in the cart's frame);
    - time: one 0.05 s step per action (rllab: ``timestep="0.05"``, ``frame_skip`` 1);
    - observation (2 floats, float32): cart x position and x velocity (rllab's ``xpos``/``xvel`` states);
    - reset: the cart at the valley floor (x = 0) with x velocity uniform in ``[-1, 1]`` (rllab's reset);
    - termination: ``x >= 0.6`` (the goal);
    - reward: ``1.0`` on the step that reaches the goal, else ``0.0``;
    - the left end of the track (x = -2) is a wall: the cart stops there (as in gymnasium's MountainCar).
    - the registered env truncates at 500 steps (VIME's horizon).

    Differences from the original: VIME's ``compute_reward`` yields ``is_current_done()``, and rllab also ends the
    episode at ``|x| >= 2``, so running off the far left end (a climb to height 2, five times the goal's height)
    would end the episode with reward 1 there too; here only the goal is rewarded and the left end is a wall. rllab
    simulated a Box2D box sliding on a 201-vertex chain (with contact,
    a tiny friction coefficient of about 0.01 and the box's centre 0.1 above the surface). Here the cart is
    a point mass constrained to the curve, without friction, following the exact equation of motion::

        (1 + h'^2) x'' = F / m * sqrt(1 + h'^2) - g h' - h' h'' x'^2,   h(x) = 1 - cos(pi x / 2)

    so the cart cannot leave the track or tip over. It is integrated with RK4 in 2 substeps per 0.05 s step
    (energy error ~1e-4 over 25 s; Box2D's semi-implicit Euler at one 0.05 s step would lose tens of percent of
    the cart's energy on this curve). Rendering is not implemented (no ``render_mode``).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": [], "render_fps": 20}

    def __init__(
        self,
        goal_x: float = 0.6,
        max_abs_x: float = 2.0,
        track_height: float = 1.0,
        track_width: float = 4.0,
        mass: float = 0.4,
        gravity: float = 10.0,
        max_force: float = 1.0,
        dt: float = 0.05,
        n_substeps: int = 2,
        render_mode: str | None = None,
    ) -> None:
        """Build the env; the defaults are rllab's/VIME's values (see the class docstring)."""
        if render_mode is not None:
            raise ValueError("SparseMountainCar has no render modes")
        self.render_mode = render_mode
        self.goal_x = float(goal_x)
        self.max_abs_x = float(max_abs_x)
        self.track_height = float(track_height)
        self.track_width = float(track_width)
        self.mass = float(mass)
        self.gravity = float(gravity)
        self.max_force = float(max_force)
        self.dt = float(dt)
        self.n_substeps = int(n_substeps)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.observation_space = spaces.Box(-BIG, BIG, shape=(2,), dtype=np.float32)
        self.state = np.zeros(2, dtype=np.float64)  # (x, x velocity)

    def height(self, x: float | np.ndarray) -> float | np.ndarray:
        """Track height at ``x``: rllab's sine chain ``h sin((2x/w - 1/2) pi)`` on a body at y = 1."""
        return 1.0 - self.track_height * np.cos(2.0 * np.pi * x / self.track_width)

    def _slope(self, x: float) -> tuple[float, float]:
        """First and second derivatives of :meth:`height` at ``x``."""
        k = 2.0 * math.pi / self.track_width
        return self.track_height * k * math.sin(k * x), self.track_height * k * k * math.cos(k * x)

    def _accel(self, x: float, v: float, force: float) -> float:
        """x'' of a frictionless point mass on the track, pushed along the track by ``force``."""
        h1, h2 = self._slope(x)
        stretch = 1.0 + h1 * h1
        return (force / self.mass * math.sqrt(stretch) - self.gravity * h1 - h1 * h2 * v * v) / stretch

    def set_state(self, x: float, v: float) -> None:
        """Place the cart at ``x`` with x velocity ``v`` (for tests and demonstrations)."""
        self.state = np.array([x, v], dtype=np.float64)

    def _get_obs(self) -> np.ndarray:
        return self.state.astype(np.float32)

    def _is_done(self) -> bool:
        return bool(self.state[0] >= self.goal_x)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """rllab's reset: x = 0, x velocity uniform in [-1, 1]."""
        super().reset(seed=seed)
        self.state = np.array([0.0, self.np_random.uniform(-1.0, 1.0)], dtype=np.float64)
        return self._get_obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Push the cart for 0.05 s; terminate with reward 1 at the goal."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (1,):
            raise ValueError(f"action must have shape (1,), got {np.shape(action)}")
        force = self.max_force * float(np.clip(a[0], -1.0, 1.0))
        s = (float(self.state[0]), float(self.state[1]))
        h = self.dt / self.n_substeps
        for _ in range(self.n_substeps):
            s = rk4(lambda z: (z[1], self._accel(z[0], z[1], force)), s, h)
        x, v = s
        if x <= -self.max_abs_x:  # inelastic wall at the left end of the track
            x, v = -self.max_abs_x, max(v, 0.0)
        self.state = np.array((x, v), dtype=np.float64)
        terminated = self._is_done()
        reward = 1.0 if terminated else 0.0
        return self._get_obs(), reward, terminated, False, {"goal_reached": terminated}
