"""The pickler: cloudpickle plus cucumber's handler registry.

``CucumberPickler`` is a ``cloudpickle.Pickler`` whose ``reducer_override``
first asks the registry (``._registry``) whether the object's type needs a
cucumber handler (locks, files, loggers, database connections, ...). If not,
cloudpickle decides: functions and classes that cannot be imported travel by
value, everything else goes through the standard pickle protocol. Identity,
shared references and cycles are therefore exactly pickle's: one memo per
payload.

Classes defined in ``__main__`` get one extra step: they travel by value (so a
fresh interpreter can rebuild them), together with a fingerprint of their
definition. A receiver whose ``__main__`` defines the same class (a fork
child, or a spawn child that re-imported the script as ``__mp_main__``) uses
its own class, so ``isinstance`` and module globals behave as the user expects;
the class's body then is never unpickled (``_reduce_main_class``).
"""

from __future__ import annotations

import io
import pickle
import sys
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any

import cloudpickle

from suitkaise.cucumber import _registry
from suitkaise.cucumber._code import keep_source, slim_function_reduce

PROTOCOL = 5

__all__ = ["PROTOCOL", "CucumberPickler", "dumps", "plain_dumps"]

_MISSING = object()
_cache_get = _registry._CACHE.get
_lookup = _registry.lookup
# Called as a plain function: a zero-argument super() call costs about as much as
# the rest of reducer_override, which runs once per object that is not a builtin
# container or atom.
_cloudpickle_reducer_override = cloudpickle.Pickler.reducer_override
_cloudpickle_dynamic_function_reduce = cloudpickle.Pickler._dynamic_function_reduce
_cloudpickle_class_setstate = cloudpickle.cloudpickle._class_setstate


class CucumberPickler(cloudpickle.Pickler):
    """cloudpickle's pickler with cucumber's handler registry in front."""

    def __init__(
        self,
        file: io.BytesIO,
        protocol: int = PROTOCOL,
        buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None,
        *,
        trace: Callable[[Any, Any], None] | None = None,
        for_fork: bool = False,
    ) -> None:
        super().__init__(file, protocol=protocol, buffer_callback=buffer_callback)
        self._trace = trace
        self._for_fork = for_fork

    def reducer_override(self, obj: Any) -> Any:
        t = type(obj)
        reducer: Any = _cache_get(t, _MISSING)
        if reducer is _MISSING:
            reducer = _lookup(t)
        if reducer is not None:
            if self._trace is not None:
                self._trace(obj, reducer)
            result = reducer(obj)
            if result is not NotImplemented:
                return result
        elif self._for_fork and (t is types.FunctionType or isinstance(obj, type)) and _is_main_name(obj):
            return NotImplemented  # by name: a fork child has this very object under that name
        elif (
            isinstance(obj, type)
            and obj.__module__ == "__main__"
            and "<locals>" not in obj.__qualname__
        ):
            return _reduce_main_class(obj, self._for_fork)
        return _cloudpickle_reducer_override(self, obj)

    def _dynamic_function_reduce(self, func: types.FunctionType) -> Any:
        return slim_function_reduce(func, _cloudpickle_dynamic_function_reduce(self, func))


def _is_main_name(obj: Any) -> bool:
    """Whether ``obj`` (a class or function) is ``__main__.<its qualified name>`` here."""
    if getattr(obj, "__module__", None) != "__main__":
        return False
    main = sys.modules.get("__main__")
    candidate: Any = main
    for part in obj.__qualname__.split("."):
        candidate = getattr(candidate, part, None)
    if candidate is not obj:
        return False
    # What a receiver that resolves a class to its own copy does (_main_class), here:
    # the fork child inherits the snapshot of the script's source for its tracebacks.
    keep_source(getattr(main, "__file__", None))
    return True


class _NotPlain(Exception):
    """Raised by the plain pass at the first object that is not a builtin atom or container."""


class _PlainPickler(pickle.Pickler):
    """The C pickler alone, for payloads made only of builtin atoms and containers.

    The C pickler handles ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``,
    ``bytearray``, ``dict``, ``list``, ``tuple``, ``set`` and ``frozenset`` (exact types)
    itself and calls ``reducer_override`` for everything else: there this pickler
    gives up, and ``dumps`` runs the full pickler from the start. For the common
    small message (a dict of numbers and strings, a list of results) the bytes are
    exactly the full pickler's, without its Python-level machinery (~3 us less).
    """

    def reducer_override(self, obj: Any) -> Any:
        raise _NotPlain


def _not_plain(buf: pickle.PickleBuffer) -> Any:
    raise _NotPlain  # the full pickler reports every buffer to the caller's callback


class _Reusable:
    """One thread's picklers (a plain one and a cucumber one), kept between calls.

    Building a cloudpickle pickler costs more than dumping a small object
    (measured: 2.3 us fresh vs 0.9 us reused for a small dict), and small
    messages are what pipes and pools send most. Re-entrant calls (a
    ``__serialize__`` that serializes) get a fresh pickler. Held by one
    ``threading.local`` attribute (``_state()``): one thread-local lookup per
    call instead of one per attribute.

    The plain pickler writes into a list (``chunks``): the C pickler hands a small
    payload to ``write`` as one finished ``bytes`` object, which is the result (no
    ``BytesIO`` copy, seek and truncate: ~0.3 us of a small dict's ~0.8 us).
    """

    __slots__ = ("busy", "chunks", "file", "pickler", "plain", "target", "write")

    def __init__(self) -> None:
        self.file = io.BytesIO()
        self.target: Callable[[pickle.PickleBuffer], Any] | None = None
        self.busy = False
        self.pickler = CucumberPickler(self.file, PROTOCOL, self._on_buffer)
        self.chunks: list[bytes] = []
        self.write = self.chunks.append  # the plain pickler's file is this object
        self.plain = self._new_plain()

    def _new_plain(self) -> _PlainPickler:
        return _PlainPickler(self, PROTOCOL, buffer_callback=_not_plain)

    def _on_buffer(self, buf: pickle.PickleBuffer) -> Any:
        target = self.target
        if target is None:
            return True  # keep the buffer in-band, as if there were no callback
        return target(buf)


_local = threading.local()
_REUSE_LIMIT = 32 * 1024  # bytes: above this, the next call gets a fresh pickler


def _state() -> _Reusable:
    """This thread's ``_Reusable``."""
    try:
        r: _Reusable = _local.r
    except AttributeError:
        r = _local.r = _Reusable()
    return r


def plain_dumps(obj: Any) -> bytes | None:
    """``obj``'s payload if it is made only of builtin atoms and containers (exactly the
    bytes ``dumps`` makes, at the C pickler's speed), else ``None``: see ``_PlainPickler``."""
    r = _state()
    if r.busy:
        return None
    r.busy = True
    chunks = r.chunks
    plain = r.plain
    try:
        plain.dump(obj)
    except Exception:  # not plain data (or anything else): the full pickler decides
        return None
    else:
        data = b"".join(chunks)  # one bytes object: that very object, no copy
        if len(data) > _REUSE_LIMIT:
            r.plain = r._new_plain()
        return data
    finally:
        plain.clear_memo()
        chunks.clear()
        r.busy = False


def dumps(
    obj: Any,
    *,
    buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None,
    trace: Callable[[Any, Any], None] | None = None,
    for_fork: bool = False,
) -> bytes:
    r = _state()
    if r.busy or trace is not None:
        f = io.BytesIO()
        CucumberPickler(f, PROTOCOL, buffer_callback, trace=trace, for_fork=for_fork).dump(obj)
        return f.getvalue()
    r.busy = True
    # for_fork too: right after a fork, building a pickler writes ~60 pages that the
    # parent must first copy (an Skprocess start under fork serializes here).
    r.pickler._for_fork = for_fork
    try:
        return _dump_full(r, obj, buffer_callback)
    finally:
        r.pickler._for_fork = False
        r.file.seek(0)
        r.file.truncate()
        r.busy = False


def _dump_full(r: _Reusable, obj: Any, buffer_callback: Callable[[pickle.PickleBuffer], Any] | None) -> bytes:
    """``obj`` through the reusable cucumber pickler (``r.busy`` is held by the caller)."""
    r.target = buffer_callback
    pickler, f = r.pickler, r.file
    pickler.globals_ref = {}  # cloudpickle's per-payload table of function globals
    try:
        pickler.dump(obj)
        data = f.getvalue()
    finally:
        pickler.clear_memo()
        r.target = None
    if len(data) > _REUSE_LIMIT:
        # A big payload leaves a big memo table behind, and clear_memo() wipes the whole
        # table on every later call: start small again.
        r.pickler = CucumberPickler(r.file, PROTOCOL, r._on_buffer)
    return data


# -- classes defined in __main__ ------------------------------------------------

_fingerprints: weakref.WeakKeyDictionary[type, str] = weakref.WeakKeyDictionary()


def _code_digest(h: Any, code: types.CodeType) -> None:
    h.update(code.co_code)
    h.update(" ".join(code.co_names).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code_digest(h, const)


def fingerprint(cls: type) -> str:
    """A digest of a class definition that is stable across interpreters.

    Covers the qualified name, the names in the class body and the bytecode of
    its functions (through static/class methods and properties), which is what
    tells "the same class, re-imported" from "a different class of that name".
    """
    try:
        return _fingerprints[cls]
    except (KeyError, TypeError):
        pass
    import hashlib  # imported here: it costs milliseconds at import time, used only here

    h = hashlib.blake2b(digest_size=16)
    h.update(cls.__qualname__.encode())
    for base in cls.__bases__:
        # A spawn child runs the script as __mp_main__: its classes are the sender's __main__ ones.
        module = "__main__" if base.__module__ == "__mp_main__" else base.__module__
        h.update(f"{module}.{base.__qualname__}".encode())
    for name in sorted(vars(cls)):
        if name == "__slotnames__":  # a cache copyreg adds on first pickling
            continue
        h.update(name.encode())
        value = vars(cls)[name]
        if isinstance(value, property):
            value = value.fget
        value = getattr(value, "__func__", value)
        code = getattr(value, "__code__", None)
        if isinstance(code, types.CodeType):
            _code_digest(h, code)
    digest = h.hexdigest()
    try:
        _fingerprints[cls] = digest
    except TypeError:  # pragma: no cover - not weak-referenceable
        pass
    return digest


def _reduce_main_class(cls: type, for_fork: bool) -> Any:
    """cloudpickle's by-value reduce of ``cls``, in parts the receiver may skip.

    The skeleton (name, bases, metaclass) is made and memoized in the payload's
    own stream before the body (methods, class attributes and what they reference)
    is filled in, as cloudpickle does: classes whose methods name each other, a
    subclass named by its base, a class naming itself are each written once and
    rebuilt once per payload. Both parts travel as nested payloads, loaded only by
    a receiver without a matching class of its own (the common case of a fork or
    spawn child costs no method rebuilding); the ``__main__`` classes they name are
    references into the outer stream (``_ClassBodyPickler``), not nested copies.
    """
    make, args, state, _, _, _ = cloudpickle.cloudpickle._dynamic_class_reduce(cls)
    # The receiver snapshots its script's source when it resolves the class to its own
    # copy. Doing it here too (once per process) hands the snapshot to every fork child
    # for free: reading and splitting the file was ~0.1-0.3 ms of each child's start.
    keep_source(getattr(sys.modules.get(cls.__module__), "__file__", None))
    return (
        _main_class,
        (cls.__qualname__, fingerprint(cls), *_dump_part((make, args), for_fork)),
        _dump_part(state, for_fork),
        None,
        None,
        _main_class,
    )


def _dump_part(obj: Any, for_fork: bool) -> tuple[bytes, tuple[type, ...]]:
    f = io.BytesIO()
    pickler = _ClassBodyPickler(f, for_fork)
    pickler.dump(obj)
    return f.getvalue(), tuple(pickler.classes)


class _ClassBodyPickler(CucumberPickler):
    """Pickles part of a ``__main__`` class; the ``__main__`` classes in it become indices
    into ``classes``, which travel in the outer stream (where pickle's memo sees them).

    An index is written as a call of ``_class_ref``, which ``_PartUnpickler`` turns into a
    lookup in those classes: ``reducer_override`` sees only non-atomic objects, where a
    ``persistent_id`` hook would run for every int and string of the body.
    """

    def __init__(self, file: io.BytesIO, for_fork: bool) -> None:
        super().__init__(file, PROTOCOL, for_fork=for_fork)
        self.classes: list[type] = []
        self._index: dict[type, int] = {}

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type) and obj.__module__ == "__main__" and "<locals>" not in obj.__qualname__:
            index = self._index.get(obj)
            if index is None:
                index = self._index[obj] = len(self.classes)
                self.classes.append(obj)
            return (_class_ref, (index,))
        return super().reducer_override(obj)


def _class_ref(index: int) -> type:
    raise pickle.UnpicklingError("a __main__ class body loads only through _main_class")


class _PartUnpickler(pickle.Unpickler):
    """Loads a part ``_ClassBodyPickler`` wrote, its class indices looked up in ``classes``."""

    def __init__(self, data: bytes, classes: tuple[type, ...]) -> None:
        super().__init__(io.BytesIO(data))
        self._classes = classes

    def find_class(self, module: str, name: str) -> Any:
        if name == "_class_ref" and module == __name__:
            return self._classes.__getitem__
        return super().find_class(module, name)


def _own_main_class(qualname: str) -> Any:
    """The class this process's ``__main__`` (or ``__mp_main__``) defines as ``qualname``, if any."""
    candidate: Any = sys.modules.get("__main__")
    for part in qualname.split("."):
        candidate = getattr(candidate, part, None)
    if isinstance(candidate, type) and candidate.__module__ in ("__main__", "__mp_main__"):
        return candidate
    return None


# Skeletons that _main_class made, which it fills (the receiver's own classes it leaves alone).
_rebuilt: weakref.WeakSet[type] = weakref.WeakSet()


def _main_class(key: str | type, data: Any, head: bytes = b"", classes: tuple[type, ...] = ()) -> type:
    """Both steps of rebuilding a ``__main__`` class (``_reduce_main_class``).

    ``_main_class(qualname, digest, head, classes)`` is the receiver's own class when
    its definition is the sender's, else a fresh skeleton; ``_main_class(cls, body)``
    then fills a fresh skeleton and leaves the receiver's own class alone. One
    function for both: each distinct function a payload names costs the receiver an
    import lookup (~1.5 us), a payload's second mention of it is a memo hit.
    """
    if isinstance(key, type):
        if key in _rebuilt:
            _cloudpickle_class_setstate(key, _PartUnpickler(*data).load())
        return key
    own = _own_main_class(key)
    if own is not None and fingerprint(own) == data:
        keep_source(getattr(sys.modules.get(own.__module__), "__file__", None))
        return own
    make, args = _PartUnpickler(head, classes).load()
    cls: type = make(*args)
    _rebuilt.add(cls)
    return cls


def _rebuild_main_class(qualname: str, digest: str, payload: bytes) -> type:
    """What payloads of sk-cucumber 0.5.0 and earlier name for a ``__main__`` class (one
    nested payload per class): kept so that such payloads still load."""
    own = _own_main_class(qualname)
    if own is not None and fingerprint(own) == digest:
        return own
    cls: type = pickle.loads(payload)
    return cls
