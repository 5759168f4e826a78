"""cucumber handlers for ``skext_demo``, loaded through the ``suitkaise.cucumber`` entry point.

Registers by qualified name, so importing this module does not import the
client module; a ``Client`` travels as a ``ClientReconnector`` (its path, never
its token) and ``reconnect_all(obj, **{"skext_demo.Client": {"*": token}})``
opens a new live client.
"""

from __future__ import annotations

from typing import Any

from suitkaise.cucumber import Reconnector, register_handler

LOADS: list[str] = []  # how many times the entry point ran in this process (the tests read it)


class ClientReconnector(Reconnector):
    """Stands in for a ``skext_demo.Client``: ``reconnect(token)`` opens a new one."""

    auth_key = "skext_demo.Client"

    def __init__(self, path: str) -> None:
        self.path = path

    def reconnect(self, token: str) -> Any:
        from skext_demo import Client

        return Client(self.path, token)


def _to_state(client: Any) -> ClientReconnector:
    return ClientReconnector(client.path)


def register() -> None:
    LOADS.append("register")
    register_handler("skext_demo.Client", _to_state)
