"""The custom protocol: ``__serialize__`` / ``__deserialize__`` on any class, including
``Skprocess`` subclasses, with ``__deserialize__`` a staticmethod or a classmethod taking the
state, and any state shape; in one process, in a fresh interpreter, and through a real
``Skprocess`` (start, tell/listen, result) under every start method."""

from __future__ import annotations

import base64
import textwrap
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sk_testkit import run_fresh
from suitkaise.cucumber import SerializationError, deserialize, serialize
from suitkaise.processing import Skprocess

# -- classes (module level: a fresh interpreter imports this module to resolve them) ----------


class PlainStatic:
    def __init__(self, state: Any) -> None:
        self.state = state
        self.via = "init"

    def __serialize__(self) -> Any:
        return self.state

    @staticmethod
    def __deserialize__(state: Any) -> PlainStatic:
        obj = PlainStatic(state)
        obj.via = "staticmethod"
        return obj


class PlainClass:
    def __init__(self, state: Any) -> None:
        self.state = state
        self.via = "init"

    def __serialize__(self) -> Any:
        return self.state

    @classmethod
    def __deserialize__(cls, state: Any) -> PlainClass:
        obj = cls(state)
        obj.via = "classmethod"
        return obj


class ProcStatic(Skprocess):
    """An Skprocess whose state travels through __serialize__ (the config goes along)."""

    def __init__(self, state: Any = None) -> None:
        self.state = state
        self.via = "init"
        self.process_config.runs = 1

    def __serialize__(self) -> Any:
        return {"state": self.state, "config": self.process_config}

    @staticmethod
    def __deserialize__(saved: Any) -> ProcStatic:
        obj = ProcStatic(saved["state"])
        obj.process_config = saved["config"]
        obj.via = "staticmethod"
        return obj

    def __run__(self) -> None:
        got = self.listen(10)
        self.heard = (type(got).__name__, got.via, got.state)

    def __result__(self) -> Any:
        return (self.via, self.state, self.heard, PlainStatic(["back", 1]))


class ProcClass(Skprocess):
    def __init__(self, state: Any = None) -> None:
        self.state = state
        self.via = "init"
        self.process_config.runs = 1

    def __serialize__(self) -> Any:
        return (self.state, self.process_config)

    @classmethod
    def __deserialize__(cls, saved: Any) -> ProcClass:
        obj = cls(saved[0])
        obj.process_config = saved[1]
        obj.via = "classmethod"
        return obj

    def __run__(self) -> None:
        got = self.listen(10)
        self.heard = (type(got).__name__, got.via, got.state)

    def __result__(self) -> Any:
        return (self.via, self.state, self.heard, PlainClass({"back": (2,)}))


CLASSES = [PlainStatic, PlainClass, ProcStatic, ProcClass]
VIA = {PlainStatic: "staticmethod", PlainClass: "classmethod", ProcStatic: "staticmethod", ProcClass: "classmethod"}

# Any state shape: atoms, containers, nesting, and objects that need cucumber's handlers.
_atoms = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
    st.binary(max_size=50),
)
_states = st.recursive(
    _atoms,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=5), inner, max_size=4),
        st.frozensets(st.integers(), max_size=4),
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cls=st.sampled_from(CLASSES), state=_states)
def test_any_state_any_class_round_trips_through_the_hook(cls: type, state: Any) -> None:
    r = deserialize(serialize({"obj": cls(state)}))["obj"]
    assert type(r) is cls and r.via == VIA[cls] and r.state == state


def test_skprocess_subclass_state_arrives_intact() -> None:
    p = ProcStatic({"k": [1, 2]})
    p.process_config.runs = 3
    r = deserialize(serialize(p))
    assert isinstance(r, ProcStatic) and isinstance(r, Skprocess)
    assert r.via == "staticmethod" and r.state == {"k": [1, 2]} and r.process_config.runs == 3
    q = deserialize(serialize(ProcClass(("a", None))))
    assert isinstance(q, ProcClass) and q.via == "classmethod" and q.state == ("a", None)


_FRESH = textwrap.dedent(
    """
    import base64, sys
    from suitkaise.cucumber import deserialize, serialize
    import test_cucumber_custom as t
    objs = deserialize(base64.b64decode(sys.stdin.read()))
    out = [(type(o).__name__, o.via, o.state) for o in objs]
    assert all(type(o) is c for o, c in zip(objs, t.CLASSES)), out
    sys.stdout.write(repr(out) + "\\n")
    sys.stdout.write(base64.b64encode(serialize([c("from child") for c in t.CLASSES])).decode())
    """
)


def test_fresh_interpreter_both_ways() -> None:
    states = [[1, "x"], {"d": (1, 2)}, None, b"raw"]
    data = base64.b64encode(serialize([c(s) for c, s in zip(CLASSES, states, strict=True)]))
    lines = run_fresh(_FRESH, stdin=data).stdout.decode().split("\n", 1)
    assert lines[0] == repr([(c.__name__, VIA[c], s) for c, s in zip(CLASSES, states, strict=True)])
    back = deserialize(base64.b64decode(lines[1]))
    assert [(type(o), o.via, o.state) for o in back] == [(c, VIA[c], "from child") for c in CLASSES]


@pytest.mark.parametrize("cls", [ProcStatic, ProcClass])
def test_real_process_uses_the_hooks(start_method: str, cls: type) -> None:
    proc = cls(["payload", 7])
    proc.start()
    proc.tell(PlainClass({"told": 1}))
    via, state, heard, extra = proc.result()
    assert via == VIA[cls]  # the child's instance came from __deserialize__
    assert state == ["payload", 7]
    assert heard == ("PlainClass", "classmethod", {"told": 1})
    assert extra.via in ("staticmethod", "classmethod")  # the result too


class SelfReferencing:
    def __init__(self) -> None:
        self.cb = self.go

    def go(self) -> int:
        return 1

    def __serialize__(self) -> Any:
        return {"cb": self.cb}  # holds the object itself: it cannot exist before __deserialize__

    @staticmethod
    def __deserialize__(state: Any) -> SelfReferencing:  # pragma: no cover - never reached
        return SelfReferencing()


def test_state_that_contains_the_object_itself_fails_fast_and_says_why() -> None:
    # Before: recursed on a 1 GB stack with the recursion limit raised to millions.
    code = textwrap.dedent(
        """
        import time
        from suitkaise.cucumber import SerializationError, serialize
        import test_cucumber_custom as t
        t0 = time.monotonic()
        try:
            serialize({"x": t.SelfReferencing()})
        except SerializationError as e:
            print(" ".join(str(e).split()))
        print(time.monotonic() - t0)
        """
    )
    out = run_fresh(code, timeout=120).stdout.decode().strip().rsplit("\n", 1)
    assert "SelfReferencing needs itself to be rebuilt" in out[0]
    assert "leave the reference back to the object out of the state" in out[0]
    assert float(out[1]) < 10


def test_bound_method_to_itself_without_the_hook_still_round_trips() -> None:
    class Plain:
        def __init__(self) -> None:
            self.cb = self.go

        def go(self) -> str:
            return "went"

    r = deserialize(serialize(Plain()))
    assert r.cb() == "went" and r.cb.__self__ is r


def test_serialization_error_type_for_self_reference() -> None:
    with pytest.raises(SerializationError):
        serialize(SelfReferencing())
