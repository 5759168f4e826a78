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
from suitkaise.cucumber._deep import call_deep, is_recursion_error
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
        if isinstance(obj, _PRIMITIVES) or isinstance(obj, _LEAVES):
            return obj
        seen = self.ids.get(id(obj))
        if seen is not None:
            return {"__cucumber_ref__": seen}
        kind = _CONTAINERS.get(type(obj))
        if kind is not None:
            node: dict[str, Any] = {"__cucumber_type__": kind, "__object_id__": self._register(obj)}
            node["items"] = [self.walk(item) for item in obj]
            return node
        if type(obj) is dict:
            node = {"__cucumber_type__": "dict", "__object_id__": self._register(obj)}
            node["items"] = [(self.walk(k), self.walk(v)) for k, v in obj.items()]
            return node
        if isinstance(obj, types.CodeType):
            return {"__cucumber_type__": "code", "name": obj.co_qualname}
        return self._reduced(obj)

    def _reduced(self, obj: Any) -> Any:
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
        node: dict[str, Any] = {
            "__cucumber_type__": _qualified(type(obj)),
            "__object_id__": number,
            "__handler__": handler,
            "reduce": _qualified(rv[0]),
            "args": [self.walk(a) for a in rv[1]],
        }
        if len(rv) > 2 and rv[2] is not None:
            node["state"] = self.walk(rv[2])
        if len(rv) > 3 and rv[3] is not None:
            node["list_items"] = [self.walk(item) for item in rv[3]]
        if len(rv) > 4 and rv[4] is not None:
            node["dict_items"] = [(self.walk(k), self.walk(v)) for k, v in rv[4]]
        return node


def _walk(obj: Any) -> Any:
    return _Walker().walk(obj)


def serialize_ir(obj: Any, debug: bool = False, verbose: bool = False) -> Any:
    """The inspection view of ``obj`` (see the module docstring for its shape)."""
    try:
        try:
            return _walk(obj)
        except Exception as exc:
            if not is_recursion_error(exc):
                raise
            return call_deep(_walk, obj)
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(
            f"{type(exc).__name__}: {exc}", type_name=_qualified(type(obj)), title="INSPECTION FAILED"
        ) from exc


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, tuple):
        return {"__cucumber_json__": "tuple", "items": [_jsonable(v) for v in value]}
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


def ir_to_jsonable(ir: Any) -> Any:
    """``ir`` with every value JSON cannot hold replaced by a ``__cucumber_json__`` marker."""
    try:
        return _jsonable(ir)
    except RecursionError:
        return call_deep(_jsonable, ir)


def ir_to_json(ir: Any, *, indent: int | None = 2, sort_keys: bool = True) -> str:
    """``ir_to_jsonable(ir)`` as a JSON string (``NaN``/``Infinity`` allowed, as in ``json.dumps``)."""
    jsonable = ir_to_jsonable(ir)
    try:
        return json.dumps(jsonable, indent=indent, sort_keys=sort_keys)
    except RecursionError:
        return call_deep(json.dumps, jsonable, indent=indent, sort_keys=sort_keys)


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
