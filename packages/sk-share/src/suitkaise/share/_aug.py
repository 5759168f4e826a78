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
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

from ._base import RESERVED

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


def _index(where: dict[int, int], lasti: int) -> int | None:
    """The instruction running at ``lasti``. A specialized instruction may report the
    offset of one of its inline CACHE entries (3.11 BINARY_SUBSCR_GETITEM; 3.12+
    LOAD_ATTR_GETATTRIBUTE_OVERRIDDEN, the warm form of every read of a Share attribute):
    use the instruction that owns it."""
    n = where.get(lasti)
    if n is None:
        before = [o for o in where if o <= lasti]
        if not before:
            return None
        n = where[max(before)]
    return n


def _check(code: CodeType, lasti: int, name: object, subscr: bool) -> bool:
    ins, where = _instructions(code)
    n = _index(where, lasti)
    if n is None:
        return False
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


PLAIN, AUG, CHAIN, METHOD, REASSIGN, AUG_ADD = 0, 1, 2, 3, 4, 5
STORE_ADD = 6  # not a read: the store-back of an AUG_ADD (``direct_store``)

# ``share.x = share.x <op> expr``: the binary operators whose reassignment is atomic
BINARY_OPS: dict[str, str] = {
    "+": "add", "-": "sub", "*": "mul", "@": "matmul", "/": "truediv", "//": "floordiv",
    "%": "mod", "**": "pow", "|": "or_", "&": "and_", "^": "xor", "<<": "lshift", ">>": "rshift",
}

# instructions that push one value from nothing, or two (3.13+ fused local loads)
_PAIR_LOADS = frozenset({"LOAD_FAST_LOAD_FAST", "LOAD_FAST_BORROW_LOAD_FAST_BORROW"})
# instructions that reorder, duplicate or pop stack items in ways the scan below cannot
# follow, or that end the expression: the pattern is refused when one appears
_OPAQUE_PREFIXES = ("SWAP", "COPY", "ROT_", "DUP_", "STORE_", "DELETE_", "RETURN", "YIELD",
                    "UNPACK_", "BEFORE_", "POP_", "SETUP_", "RAISE", "RERAISE", "END_",
                    "JUMP", "FOR_ITER", "SEND", "GET_", "PUSH_EXC", "CHECK_", "WITH_", "MAKE_CELL",
                    "COPY_FREE", "LOAD_METHOD", "LOAD_SUPER", "INSTRUMENTED", "ENTER_", "EXIT_")
_JUMPS = frozenset(dis.hasjrel) | frozenset(dis.hasjabs)


def _is_plain_attr(i: dis.Instruction) -> bool:
    """``LOAD_ATTR name`` that loads a value (not the 3.12+ method form)."""
    return i.opname == "LOAD_ATTR" and not (sys.version_info >= (3, 12) and (i.arg or 0) & 1)


def _effect(i: dis.Instruction) -> int | None:
    """Net stack effect of ``i`` (None when ``dis`` cannot tell)."""
    try:
        if i.opcode >= dis.HAVE_ARGUMENT:
            return dis.stack_effect(i.opcode, i.arg, jump=False)
        return dis.stack_effect(i.opcode, jump=False)
    except (ValueError, TypeError):
        return None


def _expr_start(ins: list[dis.Instruction], end: int) -> int | None:
    """Start of the straight-line code just before ``end`` that pushes exactly one value
    (None if there is none: a jump, an opaque instruction, or one pushing past it)."""
    need = 1  # values still to be produced, walking backwards
    k = end - 1
    while k >= 0:
        i = ins[k]
        if i.opcode in _JUMPS or i.opname.startswith(_OPAQUE_PREFIXES):
            return None
        effect = _effect(i)
        pushes = _pushes(i)
        if effect is None or pushes > need:
            return None
        need -= effect  # it produces `pushes` of them and needs its own operands first
        if need == 0:
            return k
        k -= 1
    return None


def _pushes(i: dis.Instruction) -> int:
    """How many items ``i`` pushes (the scan only needs it for the two-item loads)."""
    if i.opname in _PAIR_LOADS:
        return 2
    if i.opname == "LOAD_ATTR" and not _is_plain_attr(i):
        return 2
    if i.opname == "LOAD_GLOBAL" and (i.arg or 0) & 1:
        return 2
    return 1


def _reassign(ins: list[dis.Instruction], n: int, subscr: bool) -> bool:
    """``<target> = <target> <op> <expr>`` with the read at ``ins[n]`` (``LOAD_ATTR`` of
    the target, or the ``BINARY_SUBSCR`` of ``obj[key]``), ``<expr>`` straight-line code
    that never touches the value read, and the store target the very same instructions."""
    cur = ins[n]
    if subscr:
        if n >= 1 and ins[n - 1].opname in _PAIR_LOADS:
            start: int | None = n - 1  # `d[k]` with both locals: one fused instruction
        else:
            # the key: any straight-line expression (`d[k]`, `d[x % 3]`, `d[str(k)]`); the
            # store side evaluates it again, and a key that came out different there makes
            # the update an ordinary read and write (``Pending``), as in plain Python
            key = _expr_start(ins, n)
            start = None if key is None else _expr_start(ins, key)
        store = ("STORE_SUBSCR",)
    else:
        if not _is_plain_attr(cur):
            return False
        start = _expr_start(ins, n)
        store = ("STORE_ATTR",)
    if start is None:
        return False
    return _flows_to(ins, n, ins[start:n], store, cur, subscr)


def _flows_to(ins: list[dis.Instruction], n: int, target: list[dis.Instruction], store: tuple[str, ...],
              cur: dis.Instruction, subscr: bool) -> bool:
    """The value pushed by ``ins[n]`` is the left operand of one or more binary operators
    whose result is stored to ``target`` (the same instructions again, then ``store``)."""
    depth = 1  # items on the stack at or above the value we read (or its pending update)
    m = n + 1
    while m < len(ins):
        i = ins[m]
        if i.opcode in _JUMPS or i.opname.startswith(_OPAQUE_PREFIXES):
            return False
        if i.opname == "BINARY_OP" and depth <= 2:
            # Our value is an operand. Only ever the left one (`x * 2 + 1`): as the right
            # one, the left operand's own method runs first and may not refuse an unknown
            # operand (`"%s" % x` would format the pending read itself).
            if depth == 1 or i.argrepr not in BINARY_OPS:
                return False
            depth = 1  # the result (a pending update of the same target) replaces it
            m += 1
            if _stores_to(ins, m, target, store, cur, subscr):
                return True
            continue
        effect = _effect(i)
        if effect is None:
            return False
        pops = _pushes(i) - effect
        if pops >= depth:
            return False  # the instruction consumes the value we read
        depth += effect
        m += 1
    return False


def _stores_to(ins: list[dis.Instruction], m: int, target: list[dis.Instruction], store: tuple[str, ...],
               cur: dis.Instruction, subscr: bool) -> bool:
    """``ins[m:]`` stores the top of the stack to ``target`` (the same instructions again)."""
    tail = ins[m : m + 1 + len(target)]
    if len(tail) != len(target) + 1 or tail[-1].opname not in store:
        return False
    if any(a.opname != b.opname or a.arg != b.arg for a, b in zip(tail, target, strict=False)):
        return False
    return subscr or tail[-1].argval == cur.argval


# id(code) + instruction offset -> (code, answer[, amount of an AUG_ADD]). Keyed by an
# int, not by the code object: hashing a code object hashes its bytecode and constants
# (~1 us for a module's code), and a tuple key costs its allocation and hash on every
# read. The sum identifies the instruction: a code object holds its bytecode inline
# (3.11+), so two live code objects never give the same sum, and the code object kept in
# the value keeps it alive: an entry found for a running frame's sum is that frame's
# instruction (Share's read hot path relies on it and skips the ``got[0] is code`` check).
_KIND: dict[int, tuple[Any, ...]] = {}
# instruction offset -> the _KIND entry ``read_kind`` (or ``direct_store``) last gave for an
# attribute read (or store) at that offset, in whichever code object. Share's read hot path
# tries it first: a small-int lookup and an identity check of the caller's code
# (``entry[0] is frame.f_code``) cost ~40 ns less than hashing ``id(code) + offset`` (two
# int allocations). Two hot reads at one offset in different code objects take turns: each
# miss falls back to _KIND and takes the slot.
_AT: dict[int, tuple[Any, ...]] = {}
_GET: dict[int, tuple[CodeType, bool]] = {}


def _get_reassign(code: CodeType, lasti: int) -> bool:
    ins, where = _instructions(code)
    n = _index(where, lasti)
    if n is None:
        return False
    call = ins[n]
    if call.opname != "CALL" or call.arg not in (1, 2):
        return False
    end = n - 1 if n >= 1 and ins[n - 1].opname == "PRECALL" else n  # 3.11 has PRECALL
    starts = []
    for _ in range(call.arg):
        s = _expr_start(ins, end)
        if s is None:
            return False
        starts.append(s)
        end = s
    key_start = starts[-1]
    key_end = starts[-2] if call.arg == 2 else (n - 1 if ins[n - 1].opname == "PRECALL" else n)
    meth = key_start - 1
    if meth < 1 or not (_is_method_load(ins[meth]) and ins[meth].argval == "get"):
        return False
    chain = _expr_start(ins, meth)
    if chain is None:
        return False
    target = ins[chain:meth] + ins[key_start:key_end]
    return _flows_to(ins, n, target, ("STORE_SUBSCR",), call, True)


def get_reassign(frame: FrameType | None) -> bool:
    """The call running in ``frame`` is ``c.get(key[, default])`` in
    ``c[key] = c.get(key, default) <op> expr`` (the same ``c`` and ``key`` instructions on
    both sides): the store-back can apply it as one update. Cached per instruction."""
    if frame is None:
        return False
    code = frame.f_code
    key = id(code) + frame.f_lasti
    got = _GET.get(key)
    if got is not None and got[0] is code:
        return got[1]
    return _remember(_GET, key, code, _get_reassign, (code, frame.f_lasti), False)


def _remember(cache: dict[Any, Any], key: Any, code: CodeType, classify: Callable[..., Any],
              args: tuple[Any, ...], fallback: Any) -> Any:
    """``classify(*args)``, cached under ``key`` (bounded); ``fallback`` if it fails: the
    detection must never break the user's statement, only make it an ordinary one."""
    try:
        got = classify(*args)
    except Exception:
        got = fallback
    _keep(cache, key, (code, got))
    return got


def _keep(cache: dict[Any, Any], key: Any, entry: tuple[Any, ...]) -> None:
    """``cache[key] = entry``, the cache emptied first once it holds more than 65536 entries."""
    if len(cache) > 65536:
        cache.clear()
    cache[key] = entry


def _is_method_load(i: dis.Instruction) -> bool:
    # 3.11: LOAD_METHOD; 3.12+: LOAD_ATTR with the low bit of its argument set
    return i.opname == "LOAD_METHOD" or (
        i.opname == "LOAD_ATTR" and sys.version_info >= (3, 12) and bool((i.arg or 0) & 1)
    )


def _classify(code: CodeType, lasti: int, name: object, subscr: bool) -> int:
    if _check(code, lasti, name, subscr):
        return AUG
    ins, where = _instructions(code)
    n = _index(where, lasti)
    if n is None:
        return PLAIN
    cur = ins[n]
    if subscr:
        if cur.opname == "BINARY_SUBSCR" or (cur.opname == "BINARY_OP" and cur.argrepr == "[]"):
            return REASSIGN if _reassign(ins, n, True) else PLAIN
        return PLAIN
    if cur.argval == name and _reassign(ins, n, False):
        return REASSIGN
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


_CONST_LOADS = frozenset({"LOAD_CONST", "LOAD_SMALL_INT"})  # 3.14: small ints have their own


def _add_of(ins: list[dis.Instruction], n: int, name: object) -> int | None:
    """``d`` when ``ins[n]`` is the read of ``x.name += d`` / ``x.name -= c`` (``d = -c``)
    with an int constant ``c``: ``COPY 1; LOAD_ATTR name; LOAD_CONST c; BINARY_OP +=;
    SWAP 2; STORE_ATTR name``. Else None."""
    if n < 1 or n + 4 >= len(ins) or not _shareable(name):
        return None
    cp, cur, const, op, swap, store = ins[n - 1 : n + 5]
    if not (
        cp.opname == "COPY" and cp.arg == 1 and _is_plain_attr(cur) and cur.argval == name
        and const.opname in _CONST_LOADS and type(const.argval) is int
        and op.opname == "BINARY_OP" and op.argrepr in ("+=", "-=")
        and swap.opname == "SWAP" and swap.arg == 2
        and store.opname == "STORE_ATTR" and store.argval == name
    ):
        return None
    return const.argval if op.argrepr == "+=" else -const.argval


def _shareable(name: object) -> bool:
    """Whether ``name`` can be a Share's attribute (its own members and internal names are
    not: their reads and stores are ordinary ones, never a direct add)."""
    return type(name) is str and name not in RESERVED and not name.startswith(("__", "_sk_", "\x00"))


def _direct_read(code: CodeType, lasti: int, name: object) -> int | None:
    ins, where = _instructions(code)
    n = _index(where, lasti)
    return None if n is None else _add_of(ins, n, name)


def _direct_store(code: CodeType, lasti: int, name: object) -> int:
    ins, where = _instructions(code)
    n = _index(where, lasti)
    return STORE_ADD if n is not None and n >= 5 and _add_of(ins, n - 4, name) is not None else PLAIN


def direct_store(frame: FrameType, name: object) -> bool:
    """The ``STORE_ATTR`` running in ``frame`` ends ``x.name += <int constant>`` (or
    ``-=``), whose read (classified ``AUG_ADD`` from the very same instructions: the two
    answers always agree) already applied the update. Cached in ``_KIND`` as ``STORE_ADD``
    (or ``PLAIN``) under the store's offset."""
    code = frame.f_code
    lasti = frame.f_lasti
    key = id(code) + lasti
    got = _KIND.get(key)
    if got is None or got[0] is not code:
        got = (code, _remember(_KIND, key, code, _direct_store, (code, lasti, name), PLAIN))
    _AT[lasti] = got
    return bool(got[1] == STORE_ADD)


def read_kind(frame: FrameType | None, name: object, *, subscr: bool = False) -> int:
    """How the value read by the instruction running in ``frame`` is used:

    ``AUG_ADD`` it is the target of ``+=``/``-=`` with an int constant (``share.x += 1``):
               the read itself can apply the update (``_KIND`` holds the amount);
    ``AUG``    it is the target of ``op=`` (``share.x += v``);
    ``METHOD`` it is a method about to be called (``share.obj.add(...)``: ``LOAD_METHOD``);
    ``CHAIN``  only an attribute of it is used next (``share.obj.add``, ``share.o.total``);
    ``REASSIGN`` it is the left operand of ``<op>`` in ``target = target <op> expr`` and the
               result is stored back to the same target (``share.x = share.x + [v]``);
    ``PLAIN``  anything else (the value itself escapes to the caller).

    Cached per (code object, instruction offset): one dict lookup after the first time.
    """
    if frame is None:
        return PLAIN
    code = frame.f_code
    lasti = frame.f_lasti
    key = id(code) + lasti
    got = _KIND.get(key)
    if got is None or got[0] is not code:
        add = None
        if not subscr:
            try:
                add = _direct_read(code, lasti, name)
            except Exception:
                add = None
        if add is not None:
            got = (code, AUG_ADD, add)
            _keep(_KIND, key, got)
        else:
            got = (code, _remember(_KIND, key, code, _classify, (code, lasti, name, subscr), PLAIN))
    if not subscr:
        _AT[lasti] = got
    return got[1]
