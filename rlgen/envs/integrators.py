"""Numerical integration shared by the numpy-simulated envs (rllab's Box2D tasks)."""

from __future__ import annotations

from collections.abc import Callable


def rk4(deriv: Callable[[tuple[float, ...]], tuple[float, ...]], s: tuple[float, ...], h: float) -> tuple[float, ...]:
    """One classic Runge-Kutta step of size ``h`` for ``s' = deriv(s)`` (plain floats: faster than numpy here)."""
    k1 = deriv(s)
    k2 = deriv(tuple(x + 0.5 * h * k for x, k in zip(s, k1)))
    k3 = deriv(tuple(x + 0.5 * h * k for x, k in zip(s, k2)))
    k4 = deriv(tuple(x + h * k for x, k in zip(s, k3)))
    return tuple(x + h / 6.0 * (a + 2.0 * b + 2.0 * c + d) for x, a, b, c, d in zip(s, k1, k2, k3, k4))
