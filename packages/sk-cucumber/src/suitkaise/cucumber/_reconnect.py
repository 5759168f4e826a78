"""reconnect_all: replace every Reconnector inside an object graph with a live resource.

The walk (iterative, so a graph of any depth works; a memo by ``id`` handles
cycles and shared references):

* a ``Reconnector`` is replaced by what its ``reconnect(...)`` returns;
* ``list`` and ``deque``: items replaced in place;
* ``dict``: keys and values walked; when something changed the same dict is
  cleared and refilled in its original order;
* ``tuple`` (named tuples too), ``set``, ``frozenset``: rebuilt, and the new
  container stored into its parent;
* other objects: their ``__dict__`` and ``__slots__`` values, reassigned with
  ``setattr`` (``object.__setattr__`` for frozen dataclasses).

Classes, modules, functions and methods are not walked into, nor is what a
reconnector returns.

Auth: ``reconnect_all(obj, **{"psycopg2.Connection": {"*": pw, "analytics_db": pw2}})``.
The type key is the reconnector's ``auth_key`` (or one of its
``auth_aliases``); inside it the attribute name (object attribute, slot, or
``str`` dict key) wins over ``"*"``. A value that is not a dict counts as the
``"*"`` default of its type.

Two deliberate differences from suitkaise 0.4.14:

* a reconnector whose ``reconnect()`` raises stays in place AND a
  ``ReconnectWarning`` names its path (``root.main_db``) and the error;
  the original swallowed it silently;
* the walk uses an explicit stack, so deep graphs never hit the recursion limit.

``cache=``: a dict the caller keeps across calls. A reconnector whose identity
(its type and its state as serialized) was reconnected before gets that same
live object instead of a new one, so a long-lived process (a Pool worker)
opens one connection per resource, not one per payload. Failures are not cached,
nor kept: a cached object its reconnector finds closed (``Reconnector.usable``)
is replaced by a new one.

And: the signature of ``reconnect`` decides how auth is passed
(``reconnect(value)``, ``reconnect(auth=value)``, ``reconnect(password=value)``)
instead of retrying on ``TypeError``, so a ``TypeError`` raised inside a driver is
reported as it is. ``SubprocessReconnector`` is left in place: starting processes
is never a side effect of reconnecting (call its ``reconnect()``). A lazy
reconnector that already made its live object by attribute access hands out that
object, so work done through the reconnector is not lost.
"""

from __future__ import annotations

import collections
import inspect
import threading
import types
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from suitkaise.cucumber.reconnectors import Reconnector, ReconnectWarning, SubprocessReconnector

__all__ = ["ReconnectWarning", "reconnect_all"]


_LEAVES: tuple[type, ...] = (
    str, bytes, bytearray, int, float, complex, bool, type(None), range, slice, memoryview,
    type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
    types.CodeType, types.FrameType, types.TracebackType, property, staticmethod, classmethod,
)


def _auth_for(rec: Reconnector, name: str | None, auth: dict[str, Any]) -> tuple[Any, str | None]:
    """``(auth value or None, the type key that matched)``."""
    for key in _type_keys(rec):
        if key not in auth:
            continue
        entry = auth[key]
        if isinstance(entry, dict):
            if name is not None and name in entry:
                return entry[name], key
            if "*" in entry:
                return entry["*"], key
            return None, None
        return entry, key
    return None, None


def _type_keys(rec: Reconnector) -> list[str]:
    cls = type(rec)
    keys = [k for k in (cls.auth_key, *cls.auth_aliases) if k]
    # Fallback for third-party reconnectors that only say which client they stand for.
    # Read the instance dict and the class, never getattr: that would fire a lazy reconnect.
    details = rec.__dict__.get("details")
    details = details if isinstance(details, dict) else {}
    module = rec.__dict__.get("module") or details.get("module")
    class_name = rec.__dict__.get("class_name") or details.get("class_name")
    if isinstance(module, str) and isinstance(class_name, str) and module and class_name:
        keys.append(f"{module.split('.')[0]}.{class_name.title().replace('_', '')}")
    return keys


def _accepts(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError:
        return False
    except ValueError:  # no signature (builtin): let the call decide
        return True
    return True


def _identity(rec: Reconnector) -> tuple[str, bytes]:
    """What identifies ``rec``'s resource across payloads: its type and serialized state."""
    import hashlib  # imported here: it costs milliseconds at import time, used only here

    from suitkaise.cucumber._api import serialize  # _api imports the handlers, which import us

    cls = type(rec)
    state = serialize(rec.__getstate__())
    return f"{cls.__module__}.{cls.__qualname__}", hashlib.blake2b(state, digest_size=20).digest()


class _Walker:
    def __init__(self, start_threads: bool, auth: dict[str, Any], cache: dict[Any, Any] | None = None) -> None:
        self.start_threads = start_threads
        self.auth = auth
        self.cache = cache
        # id -> (original, result): keeps originals alive so ids are not reused.
        self.memo: dict[int, tuple[Any, Any]] = {}

    # -- one reconnector ---------------------------------------------------------

    def reconnect(self, rec: Reconnector, name: str | None, path: str) -> Any:
        if isinstance(rec, SubprocessReconnector):
            return rec  # never start processes as a side effect (see module docstring)
        identity = None
        if self.cache is not None:
            try:
                identity = _identity(rec)
            except Exception:  # a state that does not serialize: reconnect without the cache
                identity = None
            if identity is not None and identity in self.cache:
                cached = self.cache[identity]
                try:
                    usable = rec.usable(cached)
                except Exception:
                    usable = False
                if usable:
                    return cached
                del self.cache[identity]  # closed by its user: make a new one
        value, key = _auth_for(rec, name, self.auth)
        try:
            result = self._call(rec, value, key)
        except Exception as e:
            hint = ""
            if value is None and not _accepts(rec.reconnect):
                keys = _type_keys(rec)
                hint = (
                    f"; it needs credentials and none were given for it: pass them keyed by its "
                    f"type, reconnect_all(obj, **{{{(keys[0] if keys else type(rec).__name__)!r}: "
                    "{'*': secret}}) (the same mapping goes to Pool(auth=...) and "
                    "@autoreconnect(...))"
                )
            warnings.warn(
                f"reconnect_all: {path} ({type(rec).__name__}) could not reconnect and was "
                f"left in place: {type(e).__name__}: {e}{hint}",
                ReconnectWarning,
                stacklevel=5,
            )
            return rec
        if result is None:
            warnings.warn(
                f"reconnect_all: {path} ({type(rec).__name__}) could not recreate its resource "
                "(reconnect() returned None) and was left in place",
                ReconnectWarning,
                stacklevel=5,
            )
            return rec
        if self.start_threads and isinstance(result, threading.Thread) and not result.is_alive():
            try:
                result.start()
            except RuntimeError:
                pass  # already started once (and finished): nothing to do
        if identity is not None and self.cache is not None:
            self.cache[identity] = result
        return result

    def _call(self, rec: Reconnector, value: Any, key: str | None) -> Any:
        fn = rec.reconnect
        if value is None:
            if type(rec)._lazy_reconnect_on_access:
                return rec._live()  # share the object lazy access made (or will make)
            return fn()
        for args, kwargs in (((value,), {}), ((), {"auth": value}), ((), {"password": value})):
            if _accepts(fn, *args, **kwargs):
                return fn(*args, **kwargs)
        raise TypeError(
            f"auth was given under {key!r} but {type(rec).__name__}.reconnect() takes no auth "
            f"(remove {key!r} from reconnect_all's auth)"
        )

    # -- the walk ----------------------------------------------------------------

    def run(self, root: Any) -> Any:
        # Post-order on an explicit stack: a container is finished (and, for a
        # tuple or set, rebuilt) after all its children delivered their results.
        result_box: list[Any] = []
        stack: list[_Frame] = []

        def visit(node: Any, name: str | None, path: str) -> _Frame | None:
            """Either resolve ``node`` right away (pushing its result) or return a frame."""
            if isinstance(node, _LEAVES):
                deliver(node)
                return None
            key = id(node)
            done = self.memo.get(key)
            if done is not None:
                deliver(done[1])
                return None
            if isinstance(node, Reconnector):
                out = self.reconnect(node, name, path)
                self.memo[key] = (node, out)
                deliver(out)
                return None
            children = _children(node, path)
            if children is None:
                self.memo[key] = (node, node)
                deliver(node)
                return None
            # In progress: a cycle back to this node sees the node itself.
            self.memo[key] = (node, node)
            return _Frame(node, children)

        def deliver(value: Any) -> None:
            if stack:
                stack[-1].results.append(value)
            else:
                result_box.append(value)

        frame = visit(root, None, "root")
        if frame is not None:
            stack.append(frame)
        while stack:
            top = stack[-1]
            nxt = next(top.children, None)
            if nxt is not None:
                child, name, path, target = nxt
                top.originals.append(child)
                top.targets.append(target)
                sub = visit(child, name, path)
                if sub is not None:
                    stack.append(sub)
                continue
            stack.pop()
            out = _finish(top)
            self.memo[id(top.node)] = (top.node, out)
            deliver(out)
        return result_box[0]


class _Frame:
    __slots__ = ("children", "node", "originals", "results", "targets")

    def __init__(self, node: Any, children: Iterator[_Child]) -> None:
        self.node = node
        self.children = children
        self.originals: list[Any] = []
        self.results: list[Any] = []
        self.targets: list[Any] = []  # where each child goes back (index, attribute name, ...)


# (value, name used for auth, path for messages, where the value goes back)
_Child = tuple[Any, "str | None", str, Any]


_SLOTS_CACHE: dict[type, tuple[str, ...]] = {}


def _slot_names(cls: type) -> tuple[str, ...]:
    cached = _SLOTS_CACHE.get(cls)
    if cached is not None:
        return cached
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        if isinstance(slots, str):
            slots = (slots,)
        for s in slots:
            if s in ("__dict__", "__weakref__"):
                continue
            if s.startswith("__") and not s.endswith("__"):
                s = f"_{klass.__name__.lstrip('_')}{s}"  # name mangling
            if s not in names:
                names.append(s)
    if len(_SLOTS_CACHE) > 1024:  # dynamic classes come and go
        _SLOTS_CACHE.clear()
    _SLOTS_CACHE[cls] = out = tuple(names)
    return out


def _children(node: Any, path: str) -> Iterator[_Child] | None:
    """The walkable children of ``node``; ``None`` when ``node`` is a leaf."""
    if isinstance(node, (set, frozenset)):
        return ((v, None, f"{path}{{...}}", None) for v in list(node))
    if isinstance(node, (list, collections.deque, tuple)):
        return ((v, None, f"{path}[{i}]", i) for i, v in enumerate(list(node)))
    if isinstance(node, dict):
        def items() -> Iterator[_Child]:
            for k, v in list(node.items()):
                yield k, None, f"{path} (key {k!r})", "key"
                yield v, (k if isinstance(k, str) else None), f"{path}[{k!r}]", "value"
        return items()
    try:
        d = object.__getattribute__(node, "__dict__")  # never a user __getattr__
    except AttributeError:
        d = None
    if not isinstance(d, dict):
        d = None
    slots = _slot_names(type(node))
    if d is None and not slots:
        return None

    def attrs() -> Iterator[_Child]:
        if d is not None:
            for k, v in list(d.items()):
                yield v, k, f"{path}.{k}", k
        for s in slots:
            try:
                v = object.__getattribute__(node, s)
            except AttributeError:
                continue
            yield v, s, f"{path}.{s}", s
    return attrs()


def _finish(frame: _Frame) -> Any:
    """Apply the children's results to ``frame.node``; returns the (possibly new) node."""
    node, old, new, targets = frame.node, frame.originals, frame.results, frame.targets
    changed = [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a is not b]
    if not changed:
        return node
    if isinstance(node, (list, collections.deque)):
        for i in changed:
            node[targets[i]] = new[i]
        return node
    if isinstance(node, tuple):
        cls = type(node)
        if cls is tuple:
            return tuple(new)
        try:
            make = getattr(cls, "_make", None)
            return make(new) if make is not None else cls(new)
        except Exception as e:
            warnings.warn(
                f"reconnect_all: could not rebuild a {cls.__qualname__} with live resources "
                f"({type(e).__name__}: {e}); it keeps its reconnectors",
                ReconnectWarning,
                stacklevel=4,
            )
            return node
    if isinstance(node, (set, frozenset)):
        try:
            return type(node)(new)
        except TypeError as e:
            warnings.warn(
                f"reconnect_all: a {type(node).__name__} keeps its reconnectors: a live resource "
                f"cannot be a set member ({e})",
                ReconnectWarning,
                stacklevel=4,
            )
            return node
    if isinstance(node, dict):
        pairs = list(zip(new[0::2], new[1::2], strict=True))
        node.clear()
        node.update(pairs)
        return node
    for i in changed:
        _assign(node, targets[i], new[i])
    return node


def _assign(node: Any, name: str, value: Any) -> None:
    try:
        setattr(node, name, value)
        return
    except Exception:
        pass
    try:
        object.__setattr__(node, name, value)  # frozen dataclasses, read-only __setattr__
    except Exception as e:
        warnings.warn(
            f"reconnect_all: could not set {type(node).__qualname__}.{name} to its live resource "
            f"({type(e).__name__}: {e}); it keeps its reconnector",
            ReconnectWarning,
            stacklevel=5,
        )


def reconnect_all(
    obj: Any, *, start_threads: bool = False, cache: dict[Any, Any] | None = None, **auth: Any
) -> Any:
    """Replace every Reconnector inside ``obj`` with a live resource; returns the new root.

    Containers and objects are updated in place (tuples and sets are rebuilt);
    a top-level reconnector cannot be replaced in place, so always use the
    return value: ``conn = reconnect_all(conn)``. ``start_threads=True`` starts
    every thread that was reconnected. ``**auth`` maps a reconnector's type key
    (``"psycopg2.Connection"``, ``"redis.Redis"``) to ``{attribute name or "*": auth}``.
    A reconnector that fails stays in place and a ``ReconnectWarning``
    says where and why. ``cache``: a dict kept across calls; a reconnector equal
    (type and serialized state) to one reconnected before gets the same live object.
    """
    if cache is not None and not isinstance(cache, dict):
        raise TypeError(f"reconnect_all(cache=...) must be a dict or None, got {type(cache).__name__}")
    return _Walker(start_threads, auth, cache).run(obj)
