"""Sample grids as PNG files, with a minimal PNG encoder (zlib + CRC chunks; no torchvision, no Pillow needed)."""

from __future__ import annotations

import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from rlgen.common.checkpoint import atomic_write


def make_grid(images: torch.Tensor | np.ndarray, nrow: int | None = None, padding: int = 2,
              pad_value: float = 1.0) -> np.ndarray:
    """Tile ``(N, C, H, W)`` images with values in [0, 1] into one ``uint8`` array, ``(H', W')`` for one channel
    or ``(H', W', 3)`` for three. ``nrow`` images per row (default: a square-ish grid)."""
    x = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, np.float32)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[0] == 0:
        raise ValueError(f"expected images shaped (N, C, H, W) with C 1 or 3, got {x.shape}")
    n, c, h, w = x.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    # One reshape places every image; no per-image Python loop. Each cell is an image plus padding right and below.
    padded = np.full((ncol * nrow, c, h, w), pad_value, np.float32)
    padded[:n] = np.nan_to_num(x, nan=0.0)
    cells = np.full((c, ncol, h + padding, nrow, w + padding), pad_value, np.float32)
    cells[:, :, :h, :, :w] = padded.reshape(ncol, nrow, c, h, w).transpose(2, 0, 3, 1, 4)  # c, row, h, col, w
    grid = cells.reshape(c, ncol * (h + padding), nrow * (w + padding))
    grid = np.pad(grid, ((0, 0), (padding, 0), (padding, 0)), constant_values=pad_value)
    out = np.clip(np.rint(grid * 255.0), 0, 255).astype(np.uint8)
    return out[0] if c == 1 else out.transpose(1, 2, 0)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes for a ``uint8`` image, ``(H, W)`` greyscale or ``(H, W, 3)`` RGB (8 bits, no filtering)."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if pixels.ndim == 2:
        color_type = 0
    elif pixels.ndim == 3 and pixels.shape[2] == 3:
        color_type = 2
    else:
        raise ValueError(f"expected (H, W) or (H, W, 3) pixels, got {pixels.shape}")
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()  # filter byte 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


def save_image_grid(images: torch.Tensor | np.ndarray, path: str | os.PathLike, nrow: int | None = None,
                    padding: int = 2, pad_value: float = 1.0) -> Path:
    """Write ``(N, C, H, W)`` images in [0, 1] as one PNG grid, atomically; returns the path."""
    data = encode_png(make_grid(images, nrow, padding, pad_value))

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, write)
