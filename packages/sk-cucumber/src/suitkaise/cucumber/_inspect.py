"""A readable view of what a serialized object contains.

``serialize_ir(obj)`` returns a tree built from the same reductions
``serialize`` uses, so it shows what will travel: which handler takes each
object, which classes go by reference, what state goes along. It is for
reading, logging and tests; payloads themselves are pickle streams, and there
is no path back from the view to an object.

Node shapes (all keys are strings; ``__object_id__`` numbers objects in the
order they are first met, and later occurrences become references)::

    42, "text", 1.5, None, True, b"raw"          primitives stay bare
    {"__cucumber_type__": "list" | "tuple" | "set" | "frozenset",
     "__object_id__": 1, "items": [...]}
    {"__cucumber_type__": "dict", "__object_id__": 2, "items": [(key, value), ...]}
    {"__cucumber_ref__": 1}                       the same object again (shared or cyclic)
    {"__cucumber_type__": "global", "__object_id__": 3, "name": "os.path.join"}
    {"__cucumber_type__": "logging.Logger", "__object_id__": 4,
     "__handler__": "reduce_logger", "reduce": "suitkaise.cucumber...", "args": [...],
     "state": ..., "list_items": [...], "dict_items": [...]}

``__handler__`` names the cucumber handler, or ``"cloudpickle"`` for
functions and classes carried by value, or ``"pickle"`` for the standard
reduce protocol. ``ir_to_jsonable`` turns a view into JSON-safe values,
marking what JSON cannot hold with ``{"__cucumber_json__": kind, ...}``.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import fractions
import io
import json
import pathlib
import types
import uuid
from typing import Any

from suitkaise.cucumber import _registry
from suitkaise.cucumber._deep import Step, trampoline
from suitkaise.cucumber._errors import SerializationError
from suitkaise.cucumber._pickler import CucumberPickler

__all__ = ["ir_to_json", "ir_to_jsonable", "serialize_ir", "to_json", "to_jsonable"]

_PRIMITIVES = (type(None), bool, int, float, complex, str, bytes, bytearray)
_LEAVES = (
    datetime.date, datetime.time, datetime.timedelta, decimal.Decimal, fractions.Fraction,
    uuid.UUID, pathlib.PurePath, range,
)
_CONTAINERS: dict[type, str] = {list: "list", tuple: "tuple", set: "set", frozenset: "frozenset"}


def _qualified(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "?"
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", repr(obj))
    return f"{module}.{qualname}"


class _Walker:
    def __init__(self) -> None:
        self.ids: dict[int, int] = {}
        self.keepalive: list[Any] = []  # ids stay unique while the walk holds every object
        self.pickler = CucumberPickler(io.BytesIO())

    def _register(self, obj: Any) -> int:
        number = len(self.ids) + 1
        self.ids[id(obj)] = number
        self.keepalive.append(obj)
        return number

    def walk(self, obj: Any) -> Any:
        """The view of ``obj``: a value, or a generator for ``trampoline`` (children are yielded)."""
        if isinstance(obj, _PRIMITIVES) or isinstance(obj, _LEAVES):
            return obj
        seen = self.ids.get(id(obj))
        if seen is not None:
            return {"__cucumber_ref__": seen}
        if isinstance(obj, types.CodeType):
            return {"__cucumber_type__": "code", "name": obj.co_qualname}
        return self._node(obj)

    def _node(self, obj: Any) -> Step:
        kind = _CONTAINERS.get(type(obj))
        if kind is not None:
            node: dict[str, Any] = {"__cucumber_type__": kind, "__object_id__": self._register(obj)}
            node["items"] = items = []
            for item in obj:
                items.append((yield item))
            return node
        if type(obj) is dict:
            node = {"__cucumber_type__": "dict", "__object_id__": self._register(obj)}
            node["items"] = pairs = []
            for k, v in obj.items():
                key = yield k
                pairs.append((key, (yield v)))
            return node
        return (yield from self._reduced(obj))

    def _reduced(self, obj: Any) -> Step:
        reducer = _registry.lookup(type(obj))
        rv: Any = NotImplemented
        handler = "pickle"
        if reducer is not None:
            rv = reducer(obj)
            handler = getattr(reducer, "__name__", "handler")
        if rv is NotImplemented:
            rv = self.pickler.reducer_override(obj)
            if rv is not NotImplemented:
                handler = "cloudpickle"
        if rv is NotImplemented:
            dispatch = self.pickler.dispatch_table.get(type(obj))
            if dispatch is not None:
                rv = dispatch(obj)
            elif isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
                rv = "global"  # importable: pickle stores its name
            else:
                rv = obj.__reduce_ex__(5)
        number = self._register(obj)
        if isinstance(rv, str):
            return {"__cucumber_type__": "global", "__object_id__": number, "name": _qualified(obj)}
        yield from ()  # a generator even when it has no children
        node: dict[str, Any] = {
            "__cucumber_type__": _qualified(type(obj)),
            "__object_id__": number,
            "__handler__": handler,
            "reduce": _qualified(rv[0]),
        }
        node["args"] = args = []
        for a in rv[1]:
            args.append((yield a))
        if len(rv) > 2 and rv[2] is not None:
            node["state"] = yield rv[2]
        if len(rv) > 3 and rv[3] is not None:
            node["list_items"] = list_items = []
            for item in rv[3]:
                list_items.append((yield item))
        if len(rv) > 4 and rv[4] is not None:
            node["dict_items"] = dict_items = []
            for k, v in rv[4]:
                key = yield k
                dict_items.append((key, (yield v)))
        return node


def _walk(obj: Any) -> Any:
    return trampoline(_Walker().walk, obj)


def serialize_ir(obj: Any, debug: bool = False, verbose: bool = False) -> Any:
    """The inspection view of ``obj`` (see the module docstring for its shape)."""
    try:
        return _walk(obj)
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(
            f"{type(exc).__name__}: {exc}", type_name=_qualified(type(obj)), title="INSPECTION FAILED"
        ) from exc


def _jsonable(value: Any) -> Any:
    """The JSON-safe form of one value, or a generator (for ``trampoline``) for containers."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (dict, list, tuple)):
        return _jsonable_container(value)
    if isinstance(value, (bytes, bytearray)):
        kind = "bytes" if isinstance(value, bytes) else "bytearray"
        return {"__cucumber_json__": kind, "base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, complex):
        return {"__cucumber_json__": "complex", "real": value.real, "imag": value.imag}
    if isinstance(value, datetime.datetime):
        return {"__cucumber_json__": "datetime", "value": value.isoformat()}
    if isinstance(value, datetime.date):
        return {"__cucumber_json__": "date", "value": value.isoformat()}
    if isinstance(value, datetime.time):
        return {"__cucumber_json__": "time", "value": value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {"__cucumber_json__": "timedelta", "seconds": value.total_seconds()}
    if isinstance(value, decimal.Decimal):
        return {"__cucumber_json__": "decimal", "value": str(value)}
    if isinstance(value, uuid.UUID):
        return {"__cucumber_json__": "uuid", "value": str(value)}
    if isinstance(value, pathlib.PurePath):
        return {"__cucumber_json__": "path", "value": str(value)}
    if isinstance(value, fractions.Fraction):
        return {"__cucumber_json__": "fraction", "numerator": value.numerator, "denominator": value.denominator}
    if isinstance(value, range):
        return {"__cucumber_json__": "range", "start": value.start, "stop": value.stop, "step": value.step}
    return {"__cucumber_json__": "repr", "type": type(value).__name__, "value": repr(value)}


def _jsonable_container(value: Any) -> Step:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out[str(k)] = yield v
        return out
    items = []
    for v in value:
        items.append((yield v))
    if isinstance(value, tuple):
        return {"__cucumber_json__": "tuple", "items": items}
    return items


def _json_text(value: Any, indent: int | None, sort_keys: bool) -> str:
    """``json.dumps(value, indent=indent, sort_keys=sort_keys)`` for values too deep for it.

    Same output for the JSON-safe trees ``ir_to_jsonable`` makes (dicts with
    string keys, lists, strings, numbers, booleans, ``None``).
    """
    item_sep, key_sep = ("," if indent is not None else ", "), ": "
    pad = " " * indent if indent is not None else None
    parts: list[str] = []

    def newline(level: int) -> str:
        return "" if pad is None else "\n" + pad * level

    def write(v: Any, level: int) -> Step:
        if isinstance(v, dict):
            if not v:
                parts.append("{}")
                return
            parts.append("{")
            items = sorted(v.items()) if sort_keys else list(v.items())
            for i, (k, child) in enumerate(items):
                parts.append((item_sep if i else "") + newline(level + 1) + json.dumps(k) + key_sep)
                yield (child, level + 1)
            parts.append(newline(level) + "}")
        elif isinstance(v, list):
            if not v:
                parts.append("[]")
                return
            parts.append("[")
            for i, child in enumerate(v):
                parts.append((item_sep if i else "") + newline(level + 1))
                yield (child, level + 1)
            parts.append(newline(level) + "]")
        else:
            parts.append(json.dumps(v))

    trampoline(lambda pair: write(*pair), (value, 0))
    return "".join(parts)


def ir_to_jsonable(ir: Any) -> Any:
    """``ir`` with every value JSON cannot hold replaced by a ``__cucumber_json__`` marker."""
    return trampoline(_jsonable, ir)


def ir_to_json(ir: Any, *, indent: int | None = 2, sort_keys: bool = True) -> str:
    """``ir_to_jsonable(ir)`` as a JSON string (``NaN``/``Infinity`` allowed, as in ``json.dumps``)."""
    jsonable = ir_to_jsonable(ir)
    try:
        return json.dumps(jsonable, indent=indent, sort_keys=sort_keys)
    except RecursionError:
        return _json_text(jsonable, indent, sort_keys)


def to_jsonable(obj: Any, debug: bool = False, verbose: bool = False) -> Any:
    """The JSON-safe inspection view of ``obj``."""
    return ir_to_jsonable(serialize_ir(obj, debug=debug, verbose=verbose))


def to_json(
    obj: Any,
    *,
    indent: int | None = 2,
    sort_keys: bool = True,
    debug: bool = False,
    verbose: bool = False,
) -> str:
    """The inspection view of ``obj`` as a JSON string."""
    return ir_to_json(serialize_ir(obj, debug=debug, verbose=verbose), indent=indent, sort_keys=sort_keys)
