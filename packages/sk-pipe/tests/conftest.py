"""Fixtures shared by the sk-pipe tests."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from typing import Any

import pytest
from pipe_support import echo_child

from suitkaise.pipe import Pipe


@pytest.fixture
def echo(start_method: str) -> Iterator[Any]:
    """The anchor end of a Pipe whose child echoes every message back."""
    anchor, point = Pipe.pair()
    child = multiprocessing.Process(target=echo_child, args=(point,))
    child.start()
    point.close()
    yield anchor
    anchor.send(None)
    child.join(60)
    anchor.close()
    assert child.exitcode == 0
