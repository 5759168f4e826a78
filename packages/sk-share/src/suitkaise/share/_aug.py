"""Recognising ``x.attr op= v`` / ``x[k] op= v`` from the caller's bytecode.

Python runs ``share.x += v`` as: read ``share.x``; call ``__iadd__`` (or ``__add__``) on
what was read; store the result back. To make the whole statement one atomic
fetch-and-op while every *other* read returns a real value, the read looks at the
instruction that triggered it: in an augmented assignment the target object is
duplicated (``COPY 1`` before ``LOAD_ATTR``, ``COPY 2; COPY 2`` before ``BINARY_SUBSCR``)
and the statement ends with ``BINARY_OP <inplace>`` followed by ``SWAP``s and the
matching store. Only when both ends match does the read return an operator proxy.

Results are cached per (code object, instruction offset), so the check costs one dict
lookup after the first time. On an interpreter whose bytecode does not match these
shapes every read simply returns the real value (augmented assignments are then not
atomic), never a wrong one.
"""

from __future__ import annotations

import dis
from types import CodeType, FrameType

_CACHE: dict[tuple[CodeType, int], bool] = {}
_INSTR: dict[CodeType, tuple[list[dis.Instruction], dict[int, int]]] = {}


def _instructions(code: CodeType) -> tuple[list[dis.Instruction], dict[int, int]]:
    got = _INSTR.get(code)
    if got is None:
        ins = list(dis.get_instructions(code))
        got = (ins, {i.offset: n for n, i in enumerate(ins)})
        if len(_INSTR) > 4096:
            _INSTR.clear()
        _INSTR[code] = got
    return got


def _is_inplace(i: dis.Instruction) -> bool:
    return i.opname == "BINARY_OP" and isinstance(i.argrepr, str) and i.argrepr.endswith("=") \
        and i.argrepr not in ("==", "!=", "<=", ">=")


def _check(code: CodeType, lasti: int, name: object, subscr: bool) -> bool:
    ins, where = _instructions(code)
    n = where.get(lasti)
    if n is None:
        # a specialized instruction may report the offset of one of its inline CACHE
        # entries (3.11 BINARY_SUBSCR_GETITEM): use the instruction that owns it
        before = [o for o in where if o <= lasti]
        if not before:
            return False
        n = where[max(before)]
    cur = ins[n]
    if subscr:
        if not (cur.opname == "BINARY_SUBSCR" or (cur.opname == "BINARY_OP" and cur.argrepr == "[]")):
            return False
        if n < 2 or not (
            ins[n - 1].opname == "COPY" and ins[n - 1].arg == 2
            and ins[n - 2].opname == "COPY" and ins[n - 2].arg == 2
        ):
            return False
    else:
        if not (cur.opname.startswith("LOAD_ATTR") and cur.argval == name):
            return False
        if n < 1 or not (ins[n - 1].opname == "COPY" and ins[n - 1].arg == 1):
            return False
    for m in range(n + 1, len(ins)):
        i = ins[m]
        if i.opname.startswith("STORE_") or i.opname in ("RETURN_VALUE", "RETURN_CONST"):
            return False
        if _is_inplace(i):
            tail = [x.opname for x in ins[m + 1 : m + 4]]
            if subscr:
                return tail[:3] == ["SWAP", "SWAP", "STORE_SUBSCR"]
            return tail[:2] == ["SWAP", "STORE_ATTR"] and ins[m + 2].argval == name
    return False


def is_aug_read(frame: FrameType | None, name: object, *, subscr: bool = False) -> bool:
    """True if the instruction running in ``frame`` reads the target of an ``op=``."""
    if frame is None:
        return False
    code = frame.f_code
    key = (code, frame.f_lasti)
    got = _CACHE.get(key)
    if got is None:
        try:
            got = _check(code, frame.f_lasti, name, subscr)
        except Exception:  # never let the detection break a read
            got = False
        if len(_CACHE) > 65536:
            _CACHE.clear()
        _CACHE[key] = got
    return got
