"""Compatibility names for the Pool files: the engine now lives in one module per concern.

``_lifecycle`` (the loop), ``_inline`` (``run_inline`` for Pool items),
``_child`` (``child_main``), ``_parent`` (``start`` and the monitor),
``_runtime`` (the ``Runtime`` protocol shared by the three runtimes). Import
from those; this module only keeps ``from ._engine import run_inline`` working.
"""

from __future__ import annotations

from suitkaise.processing._child import child_main
from suitkaise.processing._inline import run_inline
from suitkaise.processing._parent import start

__all__ = ["child_main", "run_inline", "start"]
