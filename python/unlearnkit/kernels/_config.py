"""Block sizes. One fixed configuration per kernel (no autotune): under the interpreter the
tests use small blocks so that shapes not a multiple of the block are exercised cheaply."""

from __future__ import annotations

import os


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def blocks(kind: str) -> dict:
    small = interpreting()
    if kind == "covariance":
        return dict(BLOCK_N=16, BLOCK_D=16) if small else dict(BLOCK_N=32, BLOCK_D=64)
    if kind == "projection":
        return dict(BLOCK_M=16, BLOCK_D=16, BLOCK_K=16) if small else dict(BLOCK_M=64, BLOCK_D=64, BLOCK_K=32)
    if kind == "sinkhorn":
        return dict(BLOCK_M=16, BLOCK_N=16, BLOCK_D=16) if small else dict(BLOCK_M=64, BLOCK_N=64, BLOCK_D=32)
    raise KeyError(kind)
