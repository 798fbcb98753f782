"""SparseDoublePendulum: VIME's sparse-reward double pendulum (rllab's Box2D acrobot-like pendulum), in numpy."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlgen.envs import BIG
from rlgen.envs.integrators import rk4


class SparseDoublePendulumEnv(gym.Env[np.ndarray, np.ndarray]):
    """A hanging two-link pendulum driven only at its middle joint; rewarded when its tip is near the top.

    Definition (VIME: openai/vime ``envs/double_pendulum_env_x.py``; rllab:
    ``rllab/envs/box2d/double_pendulum_env.py`` and ``rllab/envs/box2d/models/double_pendulum.xml.mako``):

    - bodies (rllab's model): two uniform links of length 1, width 0.1 and mass 0.5 (density 5); link 1 hangs
      from a fixed, unactuated hinge at the origin, link 2 from a hinge at the end of link 1; gravity 10
      (Box2D's default); no friction or damping;
    - action: one float in ``[-1, 1]``, scaled to a torque of up to 50 N m at the second joint, acting on
      link 2 and, reacting, on link 1 (rllab: ``ctrllimit="-50,50"`` on ``link_joint_2``, driven through a
      saturated Box2D motor; VIME ran it through rllab's ``NormalizedEnv``, which did the same scaling);
    - time: two 0.01 s physics steps per action, 0.02 s (rllab: ``timestep="0.01"``, ``frame_skip=2``);
    - observation (6 floats, float32): ``sin, cos`` of link 1's absolute angle, its angular velocity, then
      the same for link 2 (rllab's states); angle 0 is hanging straight down, counter-clockwise positive;
    - reset (rllab's): angles ~ N(0, 0.1^2), angular velocities ~ N(0, 0.01^2): hanging, nearly at rest;
    - reward: ``1.0`` when the tip of link 2 is within distance 1 of the upright tip position ``(0, 2)``,
      else ``0.0``; never terminates; the registered env truncates at 500 steps (VIME's horizon).

    Differences from the original:

    - rllab simulated the links with Box2D; here the same rigid bodies follow their exact Lagrangian
      equations of motion, integrated with RK4 in 2 substeps per 0.01 s physics step (Box2D's semi-implicit
      Euler at one 0.01 s step errs by ~10% in energy), keeping Box2D's cap of pi/2 rad of rotation per
      0.01 s step;
    - the tip is the true end of link 2, ``joint2 + (sin a2, -cos a2)``. rllab's ``get_tip_pos`` computes
      ``joint2 + (-sin a2, -cos a2)``, mirroring link 2's horizontal offset; both agree whenever link 2 is
      vertical (so both give 1 when fully upright and 0 when hanging) and differ slightly in between;
    - rendering is not implemented.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": [], "render_fps": 50}

    def __init__(
        self,
        max_torque: float = 50.0,
        reward_radius: float = 1.0,
        physics_dt: float = 0.01,
        frame_skip: int = 2,
        n_substeps: int = 2,
        render_mode: str | None = None,
    ) -> None:
        """Build the env; the defaults are rllab's/VIME's values (see the class docstring)."""
        if render_mode is not None:
            raise ValueError("SparseDoublePendulum has no render modes")
        self.render_mode = render_mode
        self.max_torque = float(max_torque)
        self.reward_radius = float(reward_radius)
        self.physics_dt = float(physics_dt)
        self.frame_skip = int(frame_skip)
        self.n_substeps = int(n_substeps)
        self.dt = self.physics_dt * self.frame_skip
        # rllab's double_pendulum.xml.mako: links 1 x 0.1 at density 5.
        self.gravity = 10.0
        self.link_len = 1.0
        link_width = 0.1
        self.link_mass = 5.0 * self.link_len * link_width
        self.link_com = self.link_len / 2
        self.link_inertia = self.link_mass * (self.link_len**2 + link_width**2) / 12  # about its centre
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        high = np.array([1.0, 1.0, BIG, 1.0, 1.0, BIG], dtype=np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.state = np.zeros(4, dtype=np.float64)  # a1, a2 (absolute angles), w1, w2

    def _accel(self, a1: float, a2: float, w1: float, w2: float, torque: float) -> tuple[float, float]:
        """Angular accelerations of both links (absolute angles, 0 = hanging down).

        Equal links of mass m, length L, centre of mass at l = L/2 and central inertia I; the joint torque
        ``tau`` acts +tau on link 2 and -tau on link 1::

            (m l^2 + I + m L^2) w1' + m L l cos(a1 - a2) w2' + m L l sin(a1 - a2) w2^2 + (m l + m L) g sin(a1) = -tau
            m L l cos(a1 - a2) w1' + (m l^2 + I) w2'         - m L l sin(a1 - a2) w1^2 + m l g sin(a2)       = +tau
        """
        m, big_l, l, inertia, g = self.link_mass, self.link_len, self.link_com, self.link_inertia, self.gravity
        c, s = math.cos(a1 - a2), math.sin(a1 - a2)
        m11 = m * l * l + inertia + m * big_l * big_l
        m12 = m * big_l * l * c
        m22 = m * l * l + inertia
        b1 = -torque - m * big_l * l * s * w2 * w2 - (m * l + m * big_l) * g * math.sin(a1)
        b2 = torque + m * big_l * l * s * w1 * w1 - m * l * g * math.sin(a2)
        det = m11 * m22 - m12 * m12
        return (b1 * m22 - m12 * b2) / det, (m11 * b2 - m12 * b1) / det

    def tip_position(self) -> np.ndarray:
        """The (x, y) position of the free end of link 2 (the pivot is at the origin, y up)."""
        a1, a2 = self.state[0], self.state[1]
        return self.link_len * np.array([np.sin(a1) + np.sin(a2), -np.cos(a1) - np.cos(a2)])

    def set_state(self, a1: float, a2: float, w1: float = 0.0, w2: float = 0.0) -> None:
        """Set both absolute link angles and angular velocities (for tests and demonstrations)."""
        self.state = np.array([a1, a2, w1, w2], dtype=np.float64)

    def _get_obs(self) -> np.ndarray:
        a1, a2, w1, w2 = self.state
        return np.array([np.sin(a1), np.cos(a1), w1, np.sin(a2), np.cos(a2), w2], dtype=np.float32)

    def _reward(self) -> float:
        target = np.array([0.0, 2.0 * self.link_len])
        return 1.0 if float(np.linalg.norm(self.tip_position() - target)) < self.reward_radius else 0.0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """rllab's reset: hanging down with small Gaussian perturbations of angles and velocities."""
        super().reset(seed=seed)
        self.state = self.np_random.normal(size=4) * np.array([0.1, 0.1, 0.01, 0.01])
        return self._get_obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply the joint torque for 0.02 s; reward 1 if the tip ends within 1 of the top."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (1,):
            raise ValueError(f"action must have shape (1,), got {np.shape(action)}")
        torque = self.max_torque * float(np.clip(a[0], -1.0, 1.0))

        def deriv(z: tuple[float, ...]) -> tuple[float, ...]:
            return (z[2], z[3], *self._accel(z[0], z[1], z[2], z[3], torque))

        a1, a2, w1, w2 = (float(v) for v in self.state)
        max_w = 0.5 * math.pi / self.physics_dt  # Box2D's b2_maxRotation per (rllab) physics step
        h = self.physics_dt / self.n_substeps
        for _ in range(self.frame_skip * self.n_substeps):
            a1, a2, w1, w2 = rk4(deriv, (a1, a2, w1, w2), h)
            w1 = min(max(w1, -max_w), max_w)
            w2 = min(max(w2, -max_w), max_w)
        self.state = np.array([a1, a2, w1, w2], dtype=np.float64)
        tip = self.tip_position()
        return self._get_obs(), self._reward(), False, False, {"tip_x": float(tip[0]), "tip_y": float(tip[1])}
