"""Deserializing a logger never rewrites the receiver's logging (cloudpickle's test_logger):
a logger the receiver already has keeps the receiver's level, handlers and filters."""

from __future__ import annotations

import json
import logging
import os
import textwrap
from pathlib import Path

import pytest

from sk_testkit import run_fresh
from suitkaise.cucumber import deserialize, serialize

# The sender: a root logger at WARNING with its own handler, a named logger the receiver
# also has, and one the receiver has never seen.
_SENDER = textwrap.dedent(
    """
    import logging, sys
    from suitkaise import cucumber
    log_path = {log_path!r}
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    root.addHandler(logging.StreamHandler(sys.stderr))
    db = logging.getLogger("app.db")
    db.setLevel(logging.DEBUG)
    db.addHandler(logging.FileHandler(log_path))
    db.addFilter(logging.Filter("app"))
    db.propagate = False
    new = logging.getLogger("app.new")
    new.setLevel(logging.DEBUG)
    new.propagate = False
    sys.stdout.buffer.write(cucumber.serialize({{"root": root, "db": db, "new": new}}))
    """
)

_RECEIVER = textwrap.dedent(
    """
    import json, logging, os, sys
    from suitkaise import cucumber
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s|%(message)s")
    db = logging.getLogger("app.db")
    db.setLevel(logging.ERROR)
    mine = logging.StreamHandler(sys.stdout)
    db.addHandler(mine)

    def config(lg):
        return [lg.level, [id(h) for h in lg.handlers], [id(f) for f in lg.filters],
                lg.propagate, lg.disabled]

    before = {"root": config(logging.getLogger()), "db": config(db)}
    data = sys.stdin.buffer.read()
    got = cucumber.deserialize(data)
    after = {"root": config(logging.getLogger()), "db": config(db)}
    logging.getLogger().info("info still emits")
    logging.getLogger("app.other").info("child loggers too")
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # the descriptor listdir itself used
            pass
    open_logs = [t for t in targets if t.endswith(".log")]
    print("RESULT " + json.dumps({
        "before": before, "after": after,
        "same_objects": got["root"] is logging.getLogger() and got["db"] is db,
        "new_level": got["new"].level, "new_propagate": got["new"].propagate,
        "open_logs": open_logs,
    }))
    """
)


def test_receiver_keeps_its_logging_configuration(tmp_path: Path) -> None:
    log_path = tmp_path / "sender.log"
    data = run_fresh(_SENDER.format(log_path=str(log_path))).stdout
    out = run_fresh(_RECEIVER, stdin=data).stdout.decode()
    result = json.loads(out.split("RESULT ", 1)[1])
    assert result["after"] == result["before"]  # level, handlers, filters, propagate, disabled
    assert result["before"]["root"][0] == logging.INFO
    assert result["same_objects"]
    assert "root|info still emits" in out and "app.other|child loggers too" in out
    # a logger new to the receiver takes the sender's configuration
    assert result["new_level"] == logging.DEBUG and result["new_propagate"] is False
    # the sender's file handler was not attached, and its reopened file was released
    assert result["open_logs"] == []


@pytest.mark.parametrize("name", [None, "sk.cucumber.logging.kept"])
def test_in_process_round_trip_does_not_reset_a_changed_logger(name: str | None) -> None:
    logger = logging.getLogger(name)
    saved = (logger.level, list(logger.handlers), logger.propagate)
    try:
        logger.setLevel(logging.WARNING)
        data = serialize(logger)  # carries WARNING
        logger.setLevel(logging.INFO)  # the receiver changes its mind afterwards
        extra = logging.NullHandler()
        logger.addHandler(extra)
        handlers = list(logger.handlers)
        assert deserialize(data) is logger
        assert logger.level == logging.INFO
        assert logger.handlers == handlers
    finally:
        logger.setLevel(saved[0])
        logger.handlers[:] = saved[1]
        logger.propagate = saved[2]


def test_named_handler_copy_does_not_replace_the_receivers_registration(tmp_path: Path) -> None:
    mine = logging.FileHandler(tmp_path / "mine.log")
    mine.set_name("sk-cucumber-test-handler")
    try:
        copy = deserialize(serialize(mine))
        assert copy is not mine and copy.get_name() == "sk-cucumber-test-handler"
        assert logging._handlers["sk-cucumber-test-handler"] is mine  # type: ignore[attr-defined]
        copy.close()
    finally:
        mine.close()
        logging._handlers.pop("sk-cucumber-test-handler", None)  # type: ignore[attr-defined]
    assert os.path.exists(tmp_path / "mine.log")
