"""Buffers for the tests that move them between processes, and what a process holds open."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["BUFFER_KINDS", "make_buffer", "memfd_mappings", "open_fds"]

BUFFER_KINDS = ["ndarray", "bytes", "bytearray", "memoryview"]


def make_buffer(kind: str, n: int, seed: int) -> Any:
    """``n`` bytes of a pattern that depends on ``seed``, as one of ``BUFFER_KINDS``."""
    import numpy as np  # the suites that send buffers install it; the kit does not need it

    data = np.arange(n, dtype=np.uint8) + np.uint8(seed % 256)
    if kind == "ndarray":
        return data
    if kind == "bytes":
        return data.tobytes()
    if kind == "bytearray":
        return bytearray(data.tobytes())
    return memoryview(data.tobytes())


def memfd_mappings(name: str) -> int:
    """How many of this process's mappings are of memfds created with ``name``."""
    with open("/proc/self/maps") as f:
        return sum(f"memfd:{name}" in line for line in f)


def open_fds() -> int:
    """How many descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))
