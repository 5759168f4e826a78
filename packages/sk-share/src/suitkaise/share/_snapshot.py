"""The snapshot format of ``Share.__serialize__`` / ``Share.__deserialize__``::

    {"format": "suitkaise.share/1",
     "ref": (name, owner pid, host id, (server address, key, max frame) or None) or None,
     "entries": {attribute or class-table name: (encoding kind, bytes), ...}}

``entries`` are the store's bytes as they are (``_codec`` encodings), so a new store can be
filled with them without decoding anything.
"""

from __future__ import annotations

from typing import Any

from . import _codec

FORMAT = "suitkaise.share/1"
_KINDS = _codec.KINDS


def check_snapshot(state: Any) -> tuple[tuple[Any, ...] | None, dict[str, tuple[int, bytes]]]:
    """(ref, entries) of a ``Share.__serialize__`` snapshot; ValueError if it is not one."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"not a Share snapshot (format {got!r}; expected {FORMAT!r} from share.__serialize__())"
        )
    ref, entries = state.get("ref"), state.get("entries")
    if ref is not None and not (isinstance(ref, tuple) and len(ref) == 4 and isinstance(ref[0], str)):
        raise ValueError(f"Share snapshot: malformed 'ref' {ref!r}")
    if not isinstance(entries, dict):
        raise ValueError(f"Share snapshot: 'entries' must be a dict, got {type(entries).__name__}")
    for name, entry in entries.items():
        if not (
            isinstance(name, str) and isinstance(entry, tuple) and len(entry) == 2
            and entry[0] in _KINDS and isinstance(entry[1], bytes)
        ):
            raise ValueError(f"Share snapshot: malformed entry for {name!r}")
    return ref, entries
