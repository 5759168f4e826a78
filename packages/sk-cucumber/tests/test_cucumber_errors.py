"""pickle's error contract: cucumber's errors are Pickling/UnpicklingErrors, and an exception
raised by the user's own hooks (or a module missing on load) propagates as itself, with
cucumber's path added as a note, as with pickle and cloudpickle."""

from __future__ import annotations

import pickle
import textwrap
from typing import Any

import cloudpickle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sk_testkit import run_fresh
from suitkaise import cucumber
from suitkaise.cucumber import DeserializationError, SerializationError, deserialize, serialize


class HookError(Exception):
    pass


class ReduceRaises:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __reduce__(self) -> Any:
        raise self.exc


class GetstateRaises:
    def __getstate__(self) -> Any:
        raise HookError("no state today")


class SerializeRaises:
    def __serialize__(self) -> Any:
        raise KeyError("missing piece")

    @staticmethod
    def __deserialize__(state: Any) -> Any:  # pragma: no cover - never reached
        return SerializeRaises()


class SetstateRaises:
    def __init__(self) -> None:
        self.v = 1

    def __setstate__(self, state: Any) -> None:
        raise HookError("cannot restore")


class Holder:
    def __init__(self, **attrs: Any) -> None:
        self.__dict__.update(attrs)


def test_error_classes_are_picklings_errors() -> None:
    assert issubclass(SerializationError, pickle.PicklingError)
    assert issubclass(DeserializationError, pickle.UnpicklingError)
    with pytest.raises(pickle.PicklingError):
        serialize(Holder(w=_unpicklable_builtin()))
    with pytest.raises(pickle.UnpicklingError):
        deserialize(b"\x80\x05garbage")


def _unpicklable_builtin() -> Any:
    import select

    return select.epoll()


def test_cucumber_errors_still_pickle_round_trip() -> None:
    try:
        serialize(Holder(w=_unpicklable_builtin()))
    except SerializationError as e:
        back = pickle.loads(pickle.dumps(e))
        assert isinstance(back, SerializationError) and back.path == e.path


_USER_ERRORS = st.sampled_from([
    ValueError("bad value"), TypeError("refuses to travel"), HookError("mine"),
    KeyError("k"), RuntimeError("rt"), OSError(5, "io"),
])


@settings(max_examples=30, deadline=None)
@given(exc=_USER_ERRORS, where=st.sampled_from(["root", "nested", "deep"]))
def test_user_reduce_exception_propagates_as_itself_with_the_path(exc: BaseException, where: str) -> None:
    exc.__notes__ = []  # the same instance is reused across examples
    culprit = ReduceRaises(exc)
    if where == "root":
        obj: Any = culprit
        path = "root"
    elif where == "nested":
        obj = Holder(jobs=[1, {"k": culprit}])
        path = "root.jobs[1]['k']"
    else:  # deeper than the C pickler: goes through the deep retry
        obj = cur = []
        for _ in range(3000):
            cur.append([])
            cur = cur[0]
        cur.append(culprit)
        path = "root[0][0]"
    with pytest.raises(type(exc)) as info:
        serialize(obj)
    assert info.value is exc
    assert not isinstance(info.value, SerializationError)
    note = " ".join(info.value.__notes__)
    assert note.startswith("cucumber: raised while serializing " + path) and "ReduceRaises" in note
    if where != "deep":  # (too deep for cloudpickle)
        with pytest.raises(type(exc)):  # what cloudpickle does: the very same exception type
            cloudpickle.dumps(obj)


def test_getstate_and_serialize_hooks_propagate() -> None:
    with pytest.raises(HookError, match="no state today") as info:
        serialize({"a": GetstateRaises()})
    assert "root['a']" in info.value.__notes__[0]
    with pytest.raises(KeyError) as kinfo:
        serialize([SerializeRaises()])
    assert "root[0]" in kinfo.value.__notes__[0]


def test_user_setstate_exception_propagates_on_load() -> None:
    data = serialize(SetstateRaises())
    with pytest.raises(HookError, match="cannot restore") as info:
        deserialize(data)
    assert info.value.__notes__[0].startswith("cucumber: raised while deserializing")


@pytest.mark.parametrize("hook", ["__setstate__", "__deserialize__"])
def test_user_load_hook_exception_propagates_as_itself_in_another_interpreter(tmp_path: Any, hook: str) -> None:
    # The receiver's own hook raises: that exception, not a DeserializationError, with the path.
    mod = tmp_path / "hooks_mod.py"
    mod.write_text(textwrap.dedent(
        """
        import os

        class RestoreError(Exception):
            pass

        class ViaSetstate:
            def __setstate__(self, state):
                if os.environ.get("RECEIVER"):
                    raise RestoreError("no restoring here")
                self.__dict__.update(state)

        class ViaDeserialize:
            def __serialize__(self):
                return {"v": 1}

            @classmethod
            def __deserialize__(cls, state):
                if os.environ.get("RECEIVER"):
                    raise RestoreError("no restoring here")
                return cls()
        """
    ))
    cls = "ViaSetstate" if hook == "__setstate__" else "ViaDeserialize"
    sender = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from suitkaise import cucumber
        import hooks_mod
        obj = hooks_mod.{cls}()
        obj.v = 1
        sys.stdout.buffer.write(cucumber.serialize({{"jobs": [obj]}}))
        """
    )
    data = run_fresh(sender).stdout
    receiver = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(tmp_path)!r})
        os.environ["RECEIVER"] = "1"
        from suitkaise import cucumber
        import hooks_mod
        try:
            cucumber.deserialize(sys.stdin.buffer.read())
        except hooks_mod.RestoreError as e:
            print("RestoreError|" + str(e) + "|" + e.__notes__[0])
        """
    )
    out = run_fresh(receiver, stdin=data).stdout.decode().strip()
    kind, message, note = out.split("|")
    assert (kind, message) == ("RestoreError", "no restoring here")
    assert note.startswith("cucumber: raised while deserializing")


def test_missing_module_on_load_propagates_as_module_not_found(tmp_path: Any) -> None:
    # A class from a module that exists only in the sending interpreter.
    mod = tmp_path / "only_here_mod.py"
    mod.write_text("class Thing:\n    def __init__(self):\n        self.v = 3\n")
    sender = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from suitkaise import cucumber
        import only_here_mod
        sys.stdout.buffer.write(cucumber.serialize(only_here_mod.Thing()))
        """
    )
    data = run_fresh(sender).stdout
    receiver = textwrap.dedent(
        """
        import sys
        from suitkaise import cucumber
        try:
            cucumber.deserialize(sys.stdin.buffer.read())
        except ModuleNotFoundError as e:
            print("ModuleNotFoundError", e.name, e.__notes__[0].startswith("cucumber: "))
        """
    )
    out = run_fresh(receiver, stdin=data).stdout.decode().split()
    assert out == ["ModuleNotFoundError", "only_here_mod", "True"]


def test_garbage_is_still_a_deserialization_error() -> None:
    for bad in (b"", b"\x80\x05", b"not a pickle", serialize([1, 2, 3])[:-3]):
        with pytest.raises(DeserializationError):
            deserialize(bad)
    with pytest.raises(DeserializationError):
        deserialize("text")  # type: ignore[arg-type]


def test_runaway_recursion_is_a_serialization_error_that_is_a_pickling_error() -> None:
    class A:
        __getattribute__ = lambda self, n: getattr(self, n)  # noqa: E731

    with pytest.raises(pickle.PicklingError) as info:
        serialize(A())
    assert isinstance(info.value, SerializationError)


def test_public_error_names() -> None:
    assert cucumber.SerializationError is SerializationError
