"""An off-policy run's replay buffer in its checkpoint, as a plain ``.npz`` (no pickle, unlike SB3's
``save_replay_buffer``), so that a resumed SAC/TD3 run trains on the same transitions as an uninterrupted one.

Only the filled part of SB3's :class:`~stable_baselines3.common.buffers.ReplayBuffer` is written (a run checkpointed
at 100k of its 1M-transition buffer writes 100k rows), with ``pos`` and ``full``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer

from rlgen.common.checkpoint import atomic_write
from rlgen.common.errors import UserError

FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def supports(buffer: object) -> bool:
    """Whether ``buffer`` is a plain array-backed replay buffer (not a dict-observation or HER buffer)."""
    return (isinstance(buffer, ReplayBuffer) and not isinstance(buffer, DictReplayBuffer)
            and not buffer.optimize_memory_usage)


def write_replay_buffer(buffer: ReplayBuffer, path: str | Path) -> None:
    """Write the filled rows of ``buffer`` to ``path`` (see :func:`save_replay_buffer` for an atomic write)."""
    filled = buffer.buffer_size if buffer.full else buffer.pos
    arrays = {name: getattr(buffer, name)[:filled] for name in FIELDS}
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a path
        np.savez(f, pos=np.int64(buffer.pos), full=np.bool_(buffer.full), **arrays)


def save_replay_buffer(buffer: ReplayBuffer, path: Path) -> Path:
    """Write the filled rows of ``buffer`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: write_replay_buffer(buffer, tmp))


def load_replay_buffer(buffer: ReplayBuffer, path: Path) -> None:
    """Fill ``buffer`` (freshly made, same spaces and size) from a file written by :func:`save_replay_buffer`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            filled = len(data["rewards"])
            if filled > buffer.buffer_size or data["observations"].shape[1:] != buffer.observations.shape[1:]:
                raise ValueError(f"{filled} rows of shape {data['observations'].shape[1:]} do not fit a buffer of "
                                 f"{buffer.buffer_size} x {buffer.observations.shape[1:]}")
            for name in FIELDS:
                getattr(buffer, name)[:filled] = data[name]
            buffer.pos, buffer.full = int(data["pos"]), bool(data["full"])
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"replay buffer checkpoint {path} is unreadable or does not fit this run "
                        f"({type(exc).__name__}: {exc}); resume from another run or start a new one") from exc
