"""The plain read's hot path: which handles take it, and that its registry does not leak."""

from __future__ import annotations

import dis
import gc
import multiprocessing
import pickle
from typing import Any

from suitkaise.share import Share, _aug, _share


def test_a_subclass_member_is_not_shadowed_by_a_stored_name() -> None:
    # a plain handle of the same Share may store a name a subclass defines: through the
    # subclass the member wins, also once the read's instruction is classified (hot path)
    class Sub(Share):
        def total(self) -> str:
            return "member"

    def total_of(s: Share) -> object:
        return s.total  # one instruction, classified by the plain handle's reads

    with Sub() as sub:
        plain = pickle.loads(pickle.dumps(sub))
        assert type(plain) is Share
        plain.total = 5
        plain.n = 1
        for _ in range(3):
            assert total_of(plain) == 5
            assert total_of(sub)() == "member"
            assert sub.total() == "member"
            assert sub.n == 1


def test_handles_leave_the_read_registry() -> None:
    gc.collect()
    before = len(_share._HOT)
    s = Share()
    s.x = 1
    clients = [pickle.loads(pickle.dumps(s)) for _ in range(5)]
    assert [c.x for c in clients] == [1] * 5
    cyclic = pickle.loads(pickle.dumps(s))
    holder: dict[str, object] = {"share": cyclic}
    holder["self"] = holder  # garbage only the cycle collector frees
    assert len(_share._HOT) == before + 7
    del clients, cyclic, holder
    gc.collect()
    assert len(_share._HOT) == before + 1
    s.stop()
    del s
    gc.collect()
    assert len(_share._HOT) == before


def _twins() -> tuple[dict[str, object], int]:
    """Functions whose reads of ``s.x`` sit at one bytecode offset in different code objects,
    each used differently: the value escapes, ``+=`` a constant, ``+=`` a variable,
    ``x = x + v``, a method call, a plain read of a mutable value."""
    bodies = {
        "plain": "    return s.x\n",
        "add": "    s.x += 1\n",
        "aug": "    s.x += v\n",
        "reassign": "    s.x = s.x + v\n",
        "method": "    return s.x.bit_length()\n",
        "lst": "    return s.lst\n",
    }
    def first_read(body: str, pad: int) -> tuple[object, int]:
        ns: dict[str, object] = {}
        exec("def fn(s, v=1):\n" + "    pass\n" * pad + body, ns)
        fn = ns["fn"]
        code = fn.__code__  # type: ignore[attr-defined]
        return fn, next(i.offset for i in dis.get_instructions(code) if i.argval in ("x", "lst"))

    target = max(first_read(body, 0)[1] for body in bodies.values())
    fns = {}
    offsets = set()
    for name, body in bodies.items():
        pad = (target - first_read(body, 0)[1]) // 2  # each `pass` line is a 2-byte NOP
        fns[name], offset = first_read(body, pad)
        offsets.add(offset)
    assert offsets == {target}, "the twins' reads must share one offset"
    return fns, target


def test_reads_at_one_offset_in_different_functions_keep_their_own_meaning() -> None:
    # The hot path looks an instruction's kind up by offset first (_aug._AT), checked against
    # the caller's code object: twins at one offset must never borrow each other's kind
    # (a `+=` read taken for a plain one would drop its update; a plain read taken for
    # `+=` would apply one nobody asked for).
    fns, offset = _twins()
    plain, add, aug, reassign, method, lst = (fns[k] for k in ("plain", "add", "aug", "reassign", "method", "lst"))
    with Share() as s:
        s.x = 0
        s.lst = [1]
        expected = 0
        for round_ in range(50):
            order = [plain, add, aug, reassign, method, lst]
            order = order[round_ % 6:] + order[:round_ % 6]
            for fn in order:
                got = fn(s)
                if fn in (add, aug, reassign):
                    expected += 1
                elif fn is plain:
                    assert got == expected and type(got) is int
                elif fn is method:
                    assert got == expected.bit_length()
                else:
                    assert type(got) is not list and got == [1] and list(got) == [1]
            assert s.x == expected
        assert s.x == 150
        assert _aug._AT[offset][0] in {f.__code__ for f in fns.values()}  # type: ignore[attr-defined]


def test_a_twin_updated_from_another_process_is_read_fresh() -> None:
    # the offset-first lookup must not skip the epoch check: another process's += is seen
    fns, _ = _twins()
    plain, add = fns["plain"], fns["add"]
    ctx = multiprocessing.get_context("spawn")
    with Share() as s:
        s.x = 0
        for i in range(3):
            add(s)  # type: ignore[operator]
            assert plain(s) == 2 * i + 1  # type: ignore[operator]
            p = ctx.Process(target=_add_one, args=(s,))
            p.start()
            p.join(60)
            assert p.exitcode == 0
            assert plain(s) == 2 * i + 2  # type: ignore[operator]


def _add_one(s: Share) -> None:
    s.x += 1


def _cache_offsets(fn: Any, name: str) -> list[int]:
    """The offsets of the inline cache entries after the first read of ``name`` in ``fn``:
    what ``f_lasti`` reports once 3.12+ runs that read specialized (the frame of a Python
    ``__getattribute__`` is pushed after the instruction's caches)."""
    ins = list(dis.get_instructions(fn))
    n = next(i for i, x in enumerate(ins) if x.argval == name and x.opname.startswith("LOAD_"))
    return list(range(ins[n].offset + 2, ins[n + 1].offset, 2))


def test_a_read_reported_at_its_inline_cache_is_classified_as_its_instruction() -> None:
    # Python 3.12 reports a warm `share.x` read's f_lasti at the LOAD_ATTR's last cache
    # entry: classified by exact offset it was PLAIN, and `share.x = share.x + v` from four
    # processes kept 1 000-3 700 of 4 000 updates. Each cache offset must give the kind the
    # instruction's own offset gives.
    def reassign(s: Any, v: int) -> None:
        s.x = s.x + v

    def add(s: Any) -> None:
        s.x += 1

    def method(s: Any) -> None:
        s.obj.add(1)

    cases = [(reassign, "x", _aug.REASSIGN), (add, "x", _aug.AUG_ADD), (method, "obj", _aug.CHAIN)]
    for fn, name, want in cases:
        code = fn.__code__
        offsets = _cache_offsets(fn, name)
        assert offsets, "(a LOAD_ATTR has inline caches on 3.11+)"
        for lasti in offsets:
            amount = _aug._direct_read(code, lasti, name)  # (read_kind asks this first)
            got = _aug.AUG_ADD if amount is not None else _aug._classify(code, lasti, name, False)
            assert got == want, (fn.__name__, lasti, got)
    store = next(i.offset for i in dis.get_instructions(add) if i.opname == "STORE_ATTR")
    assert _aug._direct_store(add.__code__, store, "x") == _aug.STORE_ADD
