"""Targets for the sk-pipe tests' child processes (importable in spawn children)."""

from __future__ import annotations

from typing import Any


def echo_child(point: Any) -> None:
    """Send back every message until ``None``."""
    while (msg := point.recv()) is not None:
        point.send(msg)
