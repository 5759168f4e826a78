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


@pytest.mark.parametrize("where", ["attribute", "nested"])
def test_a_share_refuses_pipe_endpoints_on_assignment(where: str) -> None:
    # Accepted before, then a spawn child reading it failed with a misleading
    # "truncated or corrupted payload" (its handle goes to one process once).
    from suitkaise.pipe import Pipe
    from suitkaise.share import Share

    anchor, point = Pipe.pair()
    try:
        with Share() as share:
            share.keep = 1
            for end in (point, anchor):
                with pytest.raises(TypeError, match="a Pipe endpoint cannot be stored in a Share") as info:
                    if where == "attribute":
                        share.pp = end
                    else:
                        share.d = {"ends": [end]}
                assert ("share.pp" if where == "attribute" else "share.d['ends'][0]") in str(info.value)
            assert share.keep == 1 and not hasattr(share, "pp") and not hasattr(share, "d")
    finally:
        anchor.close()
        point.close()
