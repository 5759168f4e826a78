"""Module-level classes and functions for test_cross_package.py (importable by spawn children)."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from suitkaise import cucumber
from suitkaise.processing import Skprocess, autoreconnect

RUNS_PER_WORKER = 5


def timer_sample(wid: int, run: int) -> float:
    """The duration worker ``wid`` records on ``run`` (known to the test)."""
    return 0.001 * (wid + 1) + 0.0001 * run


class ShareWorker(Skprocess):
    """Updates a counter, a list, a logger and an Sktimer that all live on one Share."""

    def __init__(self, share, wid):
        self.share = share
        self.wid = wid
        self.process_config.runs = RUNS_PER_WORKER

    def __run__(self):
        run = self._current_run
        self.share.counter += 1
        self.share.items.append((self.wid, run))
        self.share.log.info("worker %d run %d pid %d", self.wid, run, os.getpid())
        self.share.timer.add_time(timer_sample(self.wid, run))

    def __result__(self):
        return self.wid


def send_on_point(point, tag):
    """Pool task: send on a Pipe point handed in as an item, then wait for the reply."""
    point.send({"tag": tag, "pid": os.getpid()})
    reply = point.recv()
    point.close()
    return reply


# -- databases in Pool workers -----------------------------------------------------------

@autoreconnect()
class SqliteItem(Skprocess):
    """A Pool item holding a sqlite3 connection to a file: live again in the worker."""

    def __init__(self, db, value):
        self.db = db
        self.value = value
        self.process_config.runs = 1

    def __run__(self):
        self.is_live = isinstance(self.db, sqlite3.Connection)
        with self.db:
            self.db.execute("insert into rows (value, source) values (?, ?)", (self.value, "skprocess"))
        self.db.close()

    def __result__(self):
        return self.is_live


def sqlite_task(payload: dict[str, Any]) -> tuple[str, bool]:
    """Plain Pool task: the connection arrives live (reconnected once per worker; reconnect_all
    leaves it as it is); closing it makes the worker reconnect for the next item."""
    before = type(payload["db"]).__name__
    cucumber.reconnect_all(payload)
    db = payload["db"]
    with db:
        db.execute("insert into rows (value, source) values (?, ?)", (payload["value"], "function"))
    db.close()
    return before, isinstance(db, sqlite3.Connection)


class PgItem(Skprocess):
    """Decorated in the test with the server's password (see make_pg_item)."""

    def __init__(self, db, value):
        self.db = db
        self.value = value
        self.process_config.runs = 1

    def __run__(self):
        cur = self.db.cursor()
        cur.execute("insert into sk_rows (value, source) values (%s, %s)", (self.value, "skprocess"))
        self.db.commit()
        self.module = type(self.db).__module__
        self.db.close()

    def __result__(self):
        return self.module


def pg_task(payload: dict[str, Any]) -> tuple[str, str]:
    before = type(payload["db"]).__name__
    cucumber.reconnect_all(payload, **{"psycopg2.Connection": {"*": payload["password"]}})
    db = payload["db"]
    cur = db.cursor()
    cur.execute("insert into sk_rows (value, source) values (%s, %s)", (payload["value"], "function"))
    db.commit()
    module = type(db).__module__
    db.close()
    return before, module


# -- tell/listen + Share ------------------------------------------------------------------

class Accumulator(Skprocess):
    """Listens for numbers, adds them to a Share, tells back the running total."""

    def __init__(self, share, count):
        self.share = share
        self.process_config.runs = count

    def __prerun__(self):
        self.number = self.listen(timeout=60)

    def __run__(self):
        self.share.total += self.number
        total = self.share.total  # fetch-and-add: the value this += produced
        self.share.history.append(self.number)
        self.tell({"number": self.number, "total": total})

    def __result__(self):
        return list(self.share.history)
