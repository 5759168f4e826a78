"""The one error type of ``suitkaise.pipe``."""

from __future__ import annotations

__all__ = ["PipeEndpointError"]


class PipeEndpointError(RuntimeError):
    """A pipe endpoint was used in a way its role or state does not allow.

    Raised for: unlocking or transferring a locked endpoint, using a closed
    endpoint, sending/receiving against the direction of a one-way pipe, and
    a peer that closed or died (instead of hanging or a bare ``EOFError``).
    """
