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
import sys
from types import CodeType, FrameType

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


PLAIN, AUG, CHAIN, METHOD = 0, 1, 2, 3

_KIND: dict[tuple[CodeType, int], int] = {}


def _is_method_load(i: dis.Instruction) -> bool:
    # 3.11: LOAD_METHOD; 3.12+: LOAD_ATTR with the low bit of its argument set
    return i.opname == "LOAD_METHOD" or (
        i.opname == "LOAD_ATTR" and sys.version_info >= (3, 12) and bool((i.arg or 0) & 1)
    )


def _classify(code: CodeType, lasti: int, name: object, subscr: bool) -> int:
    if _check(code, lasti, name, subscr):
        return AUG
    if subscr:
        return PLAIN
    ins, where = _instructions(code)
    n = where.get(lasti)
    if n is None:
        return PLAIN
    cur = ins[n]
    if cur.argval != name:
        return PLAIN
    if _is_method_load(cur):
        return METHOD
    if cur.opname == "LOAD_ATTR" and n + 1 < len(ins):
        nxt = ins[n + 1]
        if _is_method_load(nxt) or (
            nxt.opname == "LOAD_ATTR" and isinstance(nxt.argval, str) and not nxt.argval.startswith("__")
        ):
            return CHAIN
    return PLAIN


def read_kind(frame: FrameType | None, name: object, *, subscr: bool = False) -> int:
    """How the value read by the instruction running in ``frame`` is used:

    ``AUG``    it is the target of ``op=`` (``share.x += 1``);
    ``METHOD`` it is a method about to be called (``share.obj.add(...)``: ``LOAD_METHOD``);
    ``CHAIN``  only an attribute of it is used next (``share.obj.add``, ``share.o.total``);
    ``PLAIN``  anything else (the value itself escapes to the caller).

    Cached per (code object, instruction offset): one dict lookup after the first time.
    """
    if frame is None:
        return PLAIN
    code = frame.f_code
    key = (code, frame.f_lasti)
    got = _KIND.get(key)
    if got is None:
        try:
            got = _classify(code, frame.f_lasti, name, subscr)
        except Exception:  # never let the detection break a read
            got = PLAIN
        if len(_KIND) > 65536:
            _KIND.clear()
        _KIND[key] = got
    return got


def is_aug_read(frame: FrameType | None, name: object, *, subscr: bool = False) -> bool:
    """True if the instruction running in ``frame`` reads the target of an ``op=``."""
    return read_kind(frame, name, subscr=subscr) == AUG
