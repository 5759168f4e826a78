"""cucumber: serialize nearly any Python object, including live resources.

Built on cloudpickle. What pickle and cloudpickle cannot move (locks, open
files, loggers, queues, threads, sockets, database connections, ...) goes
through one registry of handlers: resources that can be recreated safely come
back live, and connections come back as *Reconnectors* that
``reconnect_all`` turns into new live connections.

Scope: payloads move between Python processes running the same code (a
parent and its children, workers of a pool). They are not an archive format,
and like pickle they must never be loaded from an untrusted source.

>>> from suitkaise import cucumber
>>> add = cucumber.deserialize(cucumber.serialize(lambda a, b: a + b))
>>> add(2, 3)
5
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from suitkaise.cucumber import _code as _code  # code keeps its file name and source lines
from suitkaise.cucumber import _exceptions as _exceptions  # registers the exception handler
from suitkaise.cucumber import _handlers as _handlers  # registers resource handlers
from suitkaise.cucumber import _plugins as _plugins  # entry points, loaded on the first lookup miss
from suitkaise.cucumber._api import deserialize, serialize
from suitkaise.cucumber._errors import DeserializationError, SerializationError
from suitkaise.cucumber._exceptions import remote_traceback
from suitkaise.cucumber._reconnect import reconnect_all
from suitkaise.cucumber._registry import register_handler
from suitkaise.cucumber.reconnectors import Reconnector, ReconnectWarning

if TYPE_CHECKING:
    from suitkaise.cucumber._inspect import (
        ir_to_json,
        ir_to_jsonable,
        serialize_ir,
        to_json,
        to_jsonable,
    )

__version__ = "0.5.0"

# The inspection view is imported on first use: it needs json, decimal, fractions,
# pathlib and datetime, which serializing does not (about 5 ms of every import).
_INSPECT = frozenset({"ir_to_json", "ir_to_jsonable", "serialize_ir", "to_json", "to_jsonable"})


def __getattr__(name: str) -> Any:
    if name in _INSPECT:
        from suitkaise.cucumber import _inspect

        value = getattr(_inspect, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'suitkaise.cucumber' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _INSPECT)

__all__ = [
    "DeserializationError",
    "ReconnectWarning",
    "Reconnector",
    "SerializationError",
    "deserialize",
    "ir_to_json",
    "ir_to_jsonable",
    "reconnect_all",
    "register_handler",
    "remote_traceback",
    "serialize",
    "serialize_ir",
    "to_json",
    "to_jsonable",
]
