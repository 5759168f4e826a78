"""cucumber's refusal of suitkaise's own unserializable objects (a Pipe anchor) stays a
SerializationError with the path, while errors from user hooks propagate as themselves
(sk-cucumber's test_cucumber_errors.py). Here because it needs sk-pipe beside sk-cucumber."""

from __future__ import annotations

import select
from typing import Any

import pytest

from suitkaise.cucumber import SerializationError, serialize


class Holder:
    def __init__(self, **attrs: Any) -> None:
        self.__dict__.update(attrs)


def _unpicklable_builtin() -> Any:
    return select.epoll()


def test_library_refusals_stay_serialization_errors() -> None:
    from suitkaise.pipe import Pipe

    anchor, point = Pipe.pair()
    try:
        with pytest.raises(SerializationError) as info:
            serialize(Holder(pipe=anchor))
        assert info.value.path == "root.pipe"
        with pytest.raises(SerializationError):
            serialize(Holder(w=_unpicklable_builtin()))
    finally:
        anchor.close()
        point.close()
