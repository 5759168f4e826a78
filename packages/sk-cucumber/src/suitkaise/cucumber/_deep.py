"""Deep payloads without deep recursion: an explicit-stack pickler.

pickle's C implementation recurses once per nesting level and stops at the
interpreter's recursion limit (1000 by default), which caps nesting at a few
hundred levels. A call that hits the limit is retried here, with the same
reducers (cucumber's registry, then cloudpickle), by a pickler whose nesting
lives on a heap list instead of the C stack:

* ``DeepPickler.save`` is a driver loop over a stack of generators. Saving a
  container or a reduce tuple is a generator that *yields* each child instead
  of calling ``save`` on it; the loop saves the child and resumes the parent.
  The opcodes written are the ones ``pickle.py`` writes, so any unpickler
  reads the result (loading is iterative in pickle already).
* It runs in the caller's thread under the caller's recursion limit. Nothing
  here calls ``sys.setrecursionlimit`` or changes a thread's stack size, so
  other threads never see a different limit, and user code running inside
  (``__reduce__``, ``__getstate__``, ``__getattribute__``) recurses exactly as
  deep as it would anywhere else: runaway *user* recursion ends in the usual
  ``RecursionError``, which ``serialize`` reports as ``SerializationError``,
  never in a segfault.
* Runaway *nesting* (a ``__reduce__`` whose state holds a fresh object of the
  same kind, forever) cannot be told apart from deep data while it runs, so
  the stack is capped: at ``MAX_REDUCE_DEPTH`` objects nested through reducers
  (1.5x the 100 000 levels deep data must reach; only reducers can create new
  objects as they go) and at ``MAX_DEPTH`` levels of builtin containers (which
  exist before the call, so they only cost the stack entries). The caps bound
  memory (measured: about 1.8 kB per runaway level, under 300 MB at the cap)
  and time (bounded work per level plus the user's reducers); past them the
  call fails with ``TooDeepError``, which names the innermost types.
* The cyclic garbage collector is paused for the pass (``_collector_paused``):
  every full collection would traverse the whole stack of suspended generators.

Only payloads that overflow the fast C pickler pay for this (measured: a
100 000-deep list in about 1 s, a 100 000-object chain in about 5 s, roughly
10x the C pickler per object), and both ends stay plain pickle streams.

``trampoline`` applies the same explicit-stack idea to cucumber's other
recursive walks (the inspection view and its JSON form).
"""

from __future__ import annotations

import contextlib
import gc
import io
import pickle
import threading
from collections.abc import Callable, Generator, Iterator
from itertools import islice
from typing import Any

import cloudpickle

from suitkaise.cucumber._pickler import PROTOCOL, CucumberPickler

__all__ = ["MAX_DEPTH", "MAX_REDUCE_DEPTH", "TooDeepError", "deep_dumps", "failure_chain", "is_recursion_error", "trampoline"]

MAX_DEPTH = 2_000_000  # nested builtin containers (they exist already: the user's own memory)
MAX_REDUCE_DEPTH = 150_000  # objects nested through reducers (which may create them as they go)
_BATCH = 1000  # pickle.py's _BATCHSIZE: items per APPENDS/SETITEMS/ADDITEMS run

# Types the C pickler saves before consulting reducer_override (and without
# recursion, except the containers below); the deep pickler keeps that order.
_ATOMS = frozenset({type(None), bool, int, float, bytes, bytearray, str, pickle.PickleBuffer})

Save = Generator[Any, None, None]


class TooDeepError(RecursionError):
    """Nesting beyond ``MAX_DEPTH``, or a reducer/attribute hook that recurses without end."""

    def __init__(self, message: str, hint: str = "split the data into parts that each nest less deeply") -> None:
        super().__init__(message)
        self.hint = hint


def is_recursion_error(exc: BaseException) -> bool:
    """pickle's "too deep" error (cloudpickle re-raises it as a PicklingError)."""
    return isinstance(exc, RecursionError) or isinstance(exc.__cause__, RecursionError)


def _chain(objects: list[Any]) -> str:
    names = [type(o).__qualname__ for o in objects[-8:]]
    return " -> ".join(names)


# pickle's pure-Python pickler (not in the type stubs): its save_* helpers and memo.
_PyPickler: Any = pickle._Pickler


class DeepPickler(_PyPickler):
    """``CucumberPickler`` semantics on pickle's Python implementation, with an explicit stack."""

    dispatch_table = cloudpickle.Pickler.dispatch_table
    # cloudpickle's function reducers are instance methods that only need ``globals_ref``.
    _function_reduce = cloudpickle.Pickler._function_reduce
    _dynamic_function_reduce = CucumberPickler._dynamic_function_reduce
    _function_getnewargs = cloudpickle.Pickler._function_getnewargs
    _cucumber_reducer_override = CucumberPickler.reducer_override

    def __init__(
        self,
        file: Any,
        buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None,
        trace: Callable[[Any, Any], None] | None = None,
    ) -> None:
        super().__init__(file, PROTOCOL, buffer_callback=buffer_callback)
        self.globals_ref: dict[int, dict[str, Any]] = {}
        self._trace = trace
        self._for_fork = False  # a deep payload's __main__ objects travel by value

    def reducer_override(self, obj: Any) -> Any:
        return self._cucumber_reducer_override(obj)

    # -- the driver ------------------------------------------------------------------

    def save(self, obj: Any, save_persistent_id: bool = True) -> None:
        objects: list[Any] = [obj]  # parallel to ``stack``, for the error message
        reduces = 0  # reduce levels on the stack: only reducers can nest without end
        # Objects on the stack that are not containers: one that comes back while it is
        # still there (not memoized yet, so still saving its reduce *arguments*) needs
        # itself to be rebuilt, which pickle cannot do; it would recurse forever.
        reducing: dict[int, Any] = {}
        if type(obj) not in _CONTAINERS:
            reducing[id(obj)] = obj
        step = self._step
        pending: Any = None  # the object being stepped, until it is on the stack
        try:
            first = step(obj)
            if first is None:
                return
            stack: list[Save] = [first]
            while stack:
                try:
                    child = next(stack[-1])
                except StopIteration:
                    stack.pop()
                    done = objects.pop()
                    if type(done) not in _CONTAINERS:
                        reduces -= 1
                        reducing.pop(id(done), None)
                    continue
                pending = child
                gen = step(child)
                pending = None
                if gen is None:
                    continue
                if type(child) not in _CONTAINERS:
                    if id(child) not in reducing:
                        reducing[id(child)] = child
                    elif not isinstance(child, type):
                        raise _self_in_own_arguments(objects, child)
                    # A by-value class comes back inside its own skeleton's arguments when a
                    # base's body names it (class B(A), A.make returns B()): that second pass
                    # finds the base memoized and finishes, and the first becomes a memo
                    # lookup, as in pickle.py and the C pickler. There are finitely many classes.
                    reduces += 1
                    if reduces > MAX_REDUCE_DEPTH:
                        raise TooDeepError(
                            f"more than {MAX_REDUCE_DEPTH:,} objects nest inside each other; the innermost "
                            f"levels are {_chain(objects)}. If that is a __reduce__/__serialize__ whose state "
                            "holds a new object of its own kind, it never ends"
                        )
                elif len(stack) > MAX_DEPTH:
                    raise TooDeepError(f"containers nest deeper than {MAX_DEPTH:,} levels: {_chain(objects)}")
                stack.append(gen)
                objects.append(child)
        except Exception as exc:
            if not isinstance(exc, RecursionError):
                # Where it failed, for the error message (``failure_chain``): walking
                # down again from the root would cost a full pickling per level.
                _failures.last = (exc, objects if pending is None else [*objects, pending])
                raise
            if isinstance(exc, TooDeepError):
                raise
            raise TooDeepError(
                f"runaway recursion in user code while reducing {_chain(objects)} "
                f"(an __reduce__, __getstate__ or __getattribute__ that calls itself without end): {exc}",
                hint="fix the hook that calls itself: it recurses without end under plain pickle too",
            ) from exc

    def _step(self, obj: Any) -> Save | None:
        """pickle.py's ``save`` for one object: writes it, or returns a generator that
        writes it and yields each child for the driver to save."""
        self.framer.commit_frame()
        x = self.memo.get(id(obj))
        if x is not None:
            self.write(self.get(x[0]))
            return None
        t = type(obj)
        if t in _ATOMS:
            self.dispatch[t](self, obj)
            return None
        container = _CONTAINERS.get(t)
        if container is not None:
            return container(self, obj)
        rv = self.reducer_override(obj)
        if rv is NotImplemented:
            f = self.dispatch.get(t)
            if f is not None:  # classes and functions by reference: they only save strings
                f(self, obj)
                return None
            reduce = self.dispatch_table.get(t)
            if reduce is not None:
                rv = reduce(obj)
            elif issubclass(t, type):
                self.save_global(obj)
                return None
            else:
                rv = obj.__reduce_ex__(self.proto)
        if isinstance(rv, str):
            self.save_global(obj, rv)
            return None
        if not isinstance(rv, tuple) or not 2 <= len(rv) <= 6:
            raise pickle.PicklingError(f"the reduce value of {t.__qualname__} must be a 2- to 6-tuple or a string")
        return self._save_reduce(obj, *rv)

    def _save_reduce(
        self, obj: Any, func: Any, args: Any, state: Any = None,
        listitems: Any = None, dictitems: Any = None, state_setter: Any = None,
    ) -> Save:
        if not isinstance(args, tuple):
            raise pickle.PicklingError("args from save_reduce() must be a tuple")
        if not callable(func):
            raise pickle.PicklingError("func from save_reduce() must be callable")
        write = self.write
        func_name = getattr(func, "__name__", "")
        if func_name == "__newobj_ex__":
            cls, args, kwargs = args
            if cls is not obj.__class__:
                raise pickle.PicklingError("args[0] from __newobj_ex__ args has the wrong class")
            yield cls
            yield args
            yield kwargs
            write(pickle.NEWOBJ_EX)
        elif func_name == "__newobj__":
            cls = args[0]
            if cls is not obj.__class__:
                raise pickle.PicklingError("args[0] from __newobj__ args has the wrong class")
            yield cls
            yield args[1:]
            write(pickle.NEWOBJ)
        else:
            yield func
            yield args
            write(pickle.REDUCE)
        if id(obj) in self.memo:  # recursive through its own arguments
            write(pickle.POP + self.get(self.memo[id(obj)][0]))
        else:
            self.memoize(obj)
        if listitems is not None:
            yield from _appends(self, listitems)
        if dictitems is not None:
            yield from _setitems(self, dictitems)
        if state is not None:
            if state_setter is None:
                yield state
                write(pickle.BUILD)
            else:
                yield state_setter
                yield obj
                yield state
                write(pickle.TUPLE2 + pickle.REDUCE + pickle.POP)


def _appends(p: DeepPickler, items: Any) -> Save:
    it = iter(items)
    while True:
        batch = list(islice(it, _BATCH))
        if len(batch) > 1:
            p.write(pickle.MARK)
            yield from batch
            p.write(pickle.APPENDS)
        elif batch:
            yield batch[0]
            p.write(pickle.APPEND)
        if len(batch) < _BATCH:
            return


def _setitems(p: DeepPickler, items: Any) -> Save:
    it = iter(items)
    while True:
        batch = list(islice(it, _BATCH))
        if len(batch) > 1:
            p.write(pickle.MARK)
            for k, v in batch:
                yield k
                yield v
            p.write(pickle.SETITEMS)
        elif batch:
            k, v = batch[0]
            yield k
            yield v
            p.write(pickle.SETITEM)
        if len(batch) < _BATCH:
            return


def _save_list(p: DeepPickler, obj: list[Any]) -> Save:
    p.write(pickle.EMPTY_LIST)
    p.memoize(obj)
    if len(obj) == 1:  # the common shape of deep nesting: no batching machinery
        yield obj[0]
        p.write(pickle.APPEND)
        return
    yield from _appends(p, obj)


def _save_dict(p: DeepPickler, obj: dict[Any, Any]) -> Save:
    p.write(pickle.EMPTY_DICT)
    p.memoize(obj)
    yield from _setitems(p, obj.items())


def _save_tuple(p: DeepPickler, obj: tuple[Any, ...]) -> Save:
    n = len(obj)
    if not n:
        p.write(pickle.EMPTY_TUPLE)
        return
    if n > 3:
        p.write(pickle.MARK)
    yield from obj
    if id(obj) in p.memo:  # the tuple is recursive: drop what we pushed, fetch it back
        get = p.get(p.memo[id(obj)][0])
        p.write((pickle.POP * n if n <= 3 else pickle.POP_MARK) + get)
        return
    p.write({1: pickle.TUPLE1, 2: pickle.TUPLE2, 3: pickle.TUPLE3}.get(n, pickle.TUPLE))
    p.memoize(obj)


def _save_set(p: DeepPickler, obj: set[Any]) -> Save:
    p.write(pickle.EMPTY_SET)
    p.memoize(obj)
    it = iter(obj)
    while True:
        batch = list(islice(it, _BATCH))
        if batch:
            p.write(pickle.MARK)
            yield from batch
            p.write(pickle.ADDITEMS)
        if len(batch) < _BATCH:
            return


def _save_frozenset(p: DeepPickler, obj: frozenset[Any]) -> Save:
    p.write(pickle.MARK)
    yield from obj
    if id(obj) in p.memo:
        p.write(pickle.POP_MARK + p.get(p.memo[id(obj)][0]))
        return
    p.write(pickle.FROZENSET)
    p.memoize(obj)


_CONTAINERS: dict[type, Callable[[DeepPickler, Any], Save]] = {
    list: _save_list,
    dict: _save_dict,
    tuple: _save_tuple,
    set: _save_set,
    frozenset: _save_frozenset,
}


def _self_in_own_arguments(objects: list[Any], child: Any) -> TooDeepError:
    name = type(child).__qualname__
    start = next(i for i, o in enumerate(objects) if o is child)
    loop = " -> ".join(type(o).__qualname__ for o in [*objects[start:], child])
    return TooDeepError(
        f"{name} needs itself to be rebuilt: it is inside the arguments of its own reduce "
        f"value ({loop}), so pickling it would recurse forever",
        hint=(
            f"if {name} defines __serialize__, leave the reference back to the object out of the "
            "state it returns (__deserialize__ cannot receive an object that does not exist yet); "
            "a plain instance __dict__ or __getstate__/__setstate__ can hold such a reference"
        ),
    )


class _Failures(threading.local):
    last: tuple[BaseException, list[Any]] | None = None


_failures = _Failures()


def failure_chain(exc: BaseException) -> list[Any] | None:
    """The objects from the root down to the one that raised ``exc`` in this thread's
    last deep pass (``None`` if ``exc`` did not come from there). Consumed once."""
    last, _failures.last = _failures.last, None
    if last is not None and last[0] is exc:
        return last[1]
    return None


def deep_dumps(
    obj: Any,
    *,
    buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None,
    trace: Callable[[Any, Any], None] | None = None,
) -> bytes:
    """``dumps(obj)`` for payloads too deep for the C pickler; raises ``TooDeepError``."""
    f = io.BytesIO()
    with _collector_paused():
        DeepPickler(f, buffer_callback, trace).dump(obj)
    return f.getvalue()


_pause_lock = threading.Lock()
_pausers = 0
_was_enabled = False


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the deep pass.

    The pass keeps a suspended generator per nesting level, and each full
    collection traverses all of them (and the payload, which is alive anyway):
    measured, that tripled the time of a 100 000-object chain. Collection
    resumes when the last deep pass ends, on error too. The recursion limit
    and thread stack sizes are left alone.
    """
    global _pausers, _was_enabled
    with _pause_lock:
        if _pausers == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pausers += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pausers -= 1
            if _pausers == 0 and _was_enabled:
                gc.enable()


# -- other recursive walks ---------------------------------------------------------

Step = Generator[Any, Any, Any]


def trampoline(step: Callable[[Any], Step | Any], root: Any) -> Any:
    """Run a recursive function written as a generator, on a heap stack.

    ``step(value)`` returns either a final result or a generator that yields
    each child value it needs and receives that child's result back
    (``result = yield child``); its return value is its result. Depth is capped
    at ``MAX_DEPTH`` like the pickler's.
    """
    first = step(root)
    if not isinstance(first, Generator):
        return first
    stack: list[Step] = [first]
    value: Any = None
    while True:
        try:
            child = stack[-1].send(value)
        except StopIteration as done:
            stack.pop()
            value = done.value
            if not stack:
                return value
            continue
        sub = step(child)
        if isinstance(sub, Generator):
            if len(stack) >= MAX_DEPTH:
                raise TooDeepError(f"nesting is deeper than {MAX_DEPTH:,} levels")
            stack.append(sub)
            value = None
        else:
            value = sub

