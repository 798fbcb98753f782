"""Device selection and mixed precision, shared by every algorithm and model."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from rlgen.common.errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda`` (or ``cuda:N``) into a :class:`torch.device`.

    ``auto`` picks CUDA when it is present. Asking for CUDA on a machine without it is a user error.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name} was asked for but no CUDA device is available; use --device cpu or auto")
        return torch.device(name)
    raise UserError(f"unknown device {name!r}; use one of {', '.join(DEVICE_CHOICES)}")


def set_torch_threads(n: int | None) -> None:
    """Limit torch's intra-op threads (``None`` or 0 keeps torch's default).

    RL commands default to 1: SB3's MLPs are tiny, so extra threads only spin-wait, and on a busy 2-core machine
    two threads made a VIME run 6.7x slower (40.5 s against 6.0 s for 15k SparseMountainCar steps).
    """
    if n:
        torch.set_num_threads(int(n))


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX-512 BF16 or AMX): there bf16 matrix products run about
    twice as fast as fp32 ones; elsewhere bf16 is emulated and slower."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype that helps on ``device``: bfloat16 on CUDA GPUs that support it and on CPUs with native
    bf16, else none (fp32)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """Mixed precision where it helps (bf16, so no loss scaling is needed); a no-op elsewhere. Models compute
    their losses and metrics in fp32 (``.float()`` on the logits)."""
    dtype = amp_dtype(device) if enabled else None
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def full_precision(t: torch.Tensor) -> torch.autocast:
    """A region without autocast on ``t``'s device: the parts of a model that must not round to bf16 (logits and
    densities summed over hundreds of pixels or latents)."""
    return torch.autocast(t.device.type, enabled=False)


def at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in fp32, or as it is if wider (fp64 in tests)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))
