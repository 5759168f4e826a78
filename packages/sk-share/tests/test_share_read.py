"""The plain read's hot path: which handles take it, and that its registry does not leak."""

from __future__ import annotations

import gc
import pickle

from suitkaise.share import Share, _share


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
