"""The owner side of TCP access: runs the operations remote handles send (``rop`` tuples)
through a local handle of the store, after validating them.

::

    _net.Server handler thread ──► Dispatcher(request) ──► _ops.* on a local client handle
                                                          (same lock, same code paths)
"""

from __future__ import annotations

import operator
from typing import Any

from . import _codec, _ops
from ._aug import BINARY_OPS
from ._base import RESERVED, ShareError
from ._txn import Txn

# operator names a remote `op=` / read-modify-reassign may ask for
_BINARY_NAMES = frozenset(BINARY_OPS.values())
_AUG_OPS = frozenset(
    f"i{n}" for n in ("add", "sub", "mul", "matmul", "truediv", "floordiv", "mod", "pow",
                      "lshift", "rshift", "and", "xor", "or")
) | frozenset(BINARY_OPS.values())


class Dispatcher:
    """Runs the operations of remote clients in the owner process, through a local handle of
    the store (the same lock and the same code paths as any local process)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle  # a client-mode Share bound to the store by shared memory

    def __call__(self, req: Any) -> Any:
        if type(req) is not tuple or not req or type(req[0]) is not str:
            raise ShareError(f"malformed Share request: {type(req).__name__}")
        h = self.handle
        kind = req[0]
        if kind == "get":
            name, have = req[1], req[2]

            def get(txn: Txn) -> Any:
                found = txn._lookup(name)
                if found is None or not txn.has(name):
                    return None
                k, ver = found
                if ver and ver == have:
                    return (ver,)
                return (ver, k, txn._data(name))

            return _ops.run(h, get)
        if kind == "set":
            name, enc = req[1], req[2]
            if type(name) is not str or name.startswith(("__", "_sk_", "\x00")) or name in RESERVED:
                raise AttributeError(f"Cannot set share.{name}: the name is reserved by Share.")
            kd, data, cls = enc
            if kd not in (_codec.K_PLAIN, _codec.K_OBJECT, _codec.K_CUCUMBER, _codec.K_I64) or type(data) is not bytes or (
                cls is not None and not (type(cls[0]) is str and cls[0].startswith(_codec.CLASS_PREFIX)
                                         and type(cls[1]) is bytes)
            ):
                raise ShareError(f"malformed value for share.{name}")

            def put(txn: Txn) -> None:
                txn.put(name, (kd, data, cls), None, False)

            return _ops.run(h, put)
        if kind == "del":
            return h.__delattr__(req[1])
        if kind == "write":
            return _ops.write(h, req[1], req[2], req[3])
        if kind == "call":
            return _ops.call(h, req[1], req[2], req[3], req[4])
        if kind == "aug":
            # ("aug", path, operator name, operand[, default of the `d.get(k, default)` form])
            default = req[4] if len(req) == 5 else _ops.NO_DEFAULT
            if req[2] == "chain":  # `share.x = share.x * 2 + 1`: (operator name, operand) steps
                steps = req[3]
                if type(steps) is not tuple or not all(
                    type(st) is tuple and len(st) == 2 and st[0] in _BINARY_NAMES for st in steps
                ):
                    raise ShareError("malformed chained update")
                return _ops.aug_apply(h, req[1], _ops.chain, steps, default)
            if req[2] not in _AUG_OPS:
                raise ShareError(f"unknown in-place operator {req[2]!r}")
            return _ops.aug_apply(h, req[1], getattr(operator, req[2]), req[3], default)
        if kind == "class":
            key = req[1]
            if type(key) is not str or not key.startswith(_codec.CLASS_PREFIX):
                raise ShareError("malformed class request")
            return _ops.run(h, lambda txn: txn._load_class(key))
        if kind == "names":
            return _ops.run(h, lambda txn: txn.names())
        if kind == "entries":
            return _ops.run(h, lambda txn: txn.entries())
        if kind == "objects":
            return _ops.run(h, lambda txn: {n: _codec.copy_out(txn.get(n)) for n in txn.names()})
        if kind == "clear":
            return h.clear()
        if kind == "running":
            return h.is_running
        raise ShareError(f"unknown Share request {kind!r}")
