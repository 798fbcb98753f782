"""SparseCartpoleSwingup: VIME's sparse-reward cart-pole swing-up (rllab's Box2D cart-pole), in numpy."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlgen.envs import BIG
from rlgen.envs.integrators import rk4


class SparseCartpoleSwingupEnv(gym.Env[np.ndarray, np.ndarray]):
    """Swing a hanging pole up by pushing its cart; rewarded only while the pole is nearly upright.

    Definition (VIME: openai/vime ``envs/cartpole_swingup_env_x.py``; rllab:
    ``rllab/envs/box2d/cartpole_swingup_env.py`` and ``rllab/envs/box2d/models/cartpole.xml.mako``):

    - bodies (rllab's model): a cart of mass 1 (a 4/sqrt(12) x 3/sqrt(12) box of density 1) on a
      frictionless horizontal rail, and a uniform pole of length 1, width 0.1 and mass 0.1 hinged at the
      top of the cart; gravity 10 (Box2D's default);
    - action: one float in ``[-1, 1]``, scaled to a horizontal force on the cart of up to 10 N
      (rllab: ``ctrllimit="-10,10"``; VIME ran it through rllab's ``NormalizedEnv``, which did the same scaling);
    - time: one 0.05 s step per action (rllab: ``timestep="0.05"``, ``frame_skip`` 1);
    - observation (4 floats, float32): cart x, cart x velocity, pole angle, pole angular velocity; the angle
      is Box2D's body angle: 0 is upright, counter-clockwise positive, and it is not wrapped (as in rllab);
    - reset (rllab's): x ~ U(-1, 1), x' ~ U(-2, 2), angle ~ U(pi - 1, pi + 1) (hanging down), angle' ~ U(-3, 3);
    - termination: ``|x| > 3``;
    - reward: ``1.0`` when ``cos(angle) > 0.8`` and ``|x| <= 3`` after the step, else ``0.0`` (0 on the
      terminating step);
    - the registered env truncates at 500 steps (VIME's horizon).

    Differences from the original: rllab simulated the bodies with Box2D (a prismatic joint, a revolute joint
    and near-frictionless contact with the rail). Here the same rigid bodies follow their exact Lagrangian
    equations of motion without friction, integrated with RK4 in 2 substeps per 0.05 s step (Box2D's
    semi-implicit Euler at one 0.05 s step errs by ~10% in energy), keeping Box2D's speed caps of 2 m and
    pi/2 rad per 0.05 s step. Rendering is not implemented.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": [], "render_fps": 20}

    def __init__(
        self,
        max_cart_pos: float = 3.0,
        cos_threshold: float = 0.8,
        max_force: float = 10.0,
        dt: float = 0.05,
        n_substeps: int = 2,
        render_mode: str | None = None,
    ) -> None:
        """Build the env; the defaults are rllab's/VIME's values (see the class docstring)."""
        if render_mode is not None:
            raise ValueError("SparseCartpoleSwingup has no render modes")
        self.render_mode = render_mode
        self.max_cart_pos = float(max_cart_pos)
        self.cos_threshold = float(cos_threshold)
        self.max_force = float(max_force)
        self.dt = float(dt)
        self.n_substeps = int(n_substeps)
        # rllab's cartpole.xml.mako: cart 4/sqrt(12) x 3/sqrt(12) at density 1; pole 1 x 0.1 at density 1.
        self.gravity = 10.0
        self.cart_mass = (4.0 / 12**0.5) * (3.0 / 12**0.5)
        pole_length, pole_width = 1.0, 0.1
        self.pole_mass = pole_length * pole_width
        self.pole_com = pole_length / 2  # hinge to the pole's centre of mass
        # The pole's moment of inertia about its hinge (a rectangle about its centre, moved by parallel axes).
        self.pole_inertia = self.pole_mass * (pole_length**2 + pole_width**2) / 12 + self.pole_mass * self.pole_com**2
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.observation_space = spaces.Box(-BIG, BIG, shape=(4,), dtype=np.float32)
        self.state = np.zeros(4, dtype=np.float64)  # x, x', angle, angle'

    def _accel(self, theta: float, theta_dot: float, force: float) -> tuple[float, float]:
        """(x'', angle'') from the cart-pole's equations of motion (angle 0 = upright, CCW positive).

        With the pole's centre of mass at ``(x - l sin a, y0 + l cos a)``::

            (M + m) x'' - m l cos(a) a'' = F - m l sin(a) a'^2
            -m l cos(a) x'' + J a''      = m g l sin(a)
        """
        m, l, big_m, j = self.pole_mass, self.pole_com, self.cart_mass, self.pole_inertia
        c, s = math.cos(theta), math.sin(theta)
        a11, a12, a22 = big_m + m, -m * l * c, j
        b1 = force - m * l * s * theta_dot**2
        b2 = m * self.gravity * l * s
        det = a11 * a22 - a12 * a12
        return (b1 * a22 - a12 * b2) / det, (a11 * b2 - a12 * b1) / det

    def set_state(self, x: float, x_dot: float, theta: float, theta_dot: float) -> None:
        """Set cart position/velocity and pole angle/angular velocity (for tests and demonstrations)."""
        self.state = np.array([x, x_dot, theta, theta_dot], dtype=np.float64)

    def _get_obs(self) -> np.ndarray:
        return self.state.astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """rllab's reset: the pole within 1 rad of hanging straight down, random cart and pole motion."""
        super().reset(seed=seed)
        low = np.array([-1.0, -2.0, np.pi - 1.0, -3.0])
        high = np.array([1.0, 2.0, np.pi + 1.0, 3.0])
        self.state = self.np_random.uniform(low, high)
        return self._get_obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Push the cart for 0.05 s; reward 1 if the pole is within ~37 degrees of upright on the rail."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (1,):
            raise ValueError(f"action must have shape (1,), got {np.shape(action)}")
        force = self.max_force * float(np.clip(a[0], -1.0, 1.0))

        def deriv(z: tuple[float, ...]) -> tuple[float, ...]:
            x_acc, theta_acc = self._accel(z[2], z[3], force)
            return (z[1], x_acc, z[3], theta_acc)

        x, x_dot, theta, theta_dot = (float(v) for v in self.state)
        # Box2D's speed caps: b2_maxTranslation = 2 and b2_maxRotation = pi/2 per (rllab) step.
        max_v, max_w = 2.0 / self.dt, 0.5 * math.pi / self.dt
        h = self.dt / self.n_substeps
        for _ in range(self.n_substeps):
            x, x_dot, theta, theta_dot = rk4(deriv, (x, x_dot, theta, theta_dot), h)
            x_dot = min(max(x_dot, -max_v), max_v)
            theta_dot = min(max(theta_dot, -max_w), max_w)
        self.state = np.array([x, x_dot, theta, theta_dot], dtype=np.float64)
        terminated = bool(abs(x) > self.max_cart_pos)
        upright = bool(math.cos(theta) > self.cos_threshold)
        reward = 1.0 if (not terminated and upright) else 0.0
        return self._get_obs(), reward, terminated, False, {"cos_angle": math.cos(theta)}
