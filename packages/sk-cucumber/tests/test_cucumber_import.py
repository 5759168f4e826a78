"""What ``import suitkaise.cucumber`` costs, and that what it defers still works the first time."""

from __future__ import annotations

from sk_testkit import run_fresh

# Standard-library modules only some objects (or only errors, or only the inspection
# view) need: none of them is imported by cloudpickle, and they were about 20 ms of
# every import of cucumber.
DEFERRED = (
    "base64", "datetime", "decimal", "fractions", "hashlib", "json", "pathlib", "socket",
    "sqlite3", "subprocess", "sysconfig", "urllib.parse",
)


def test_import_loads_nothing_that_only_some_objects_need() -> None:
    out = run_fresh(
        "import sys\n"
        "import cloudpickle\n"
        "before = set(sys.modules)\n"
        "import suitkaise.cucumber\n"
        f"print(sorted(set({DEFERRED!r}) & (set(sys.modules) - before)))\n"
    )
    assert out.stdout.strip() == b"[]"


def test_deferred_handlers_errors_and_views_work_on_first_use() -> None:
    out = run_fresh(
        "import sys\n"
        "import suitkaise.cucumber as cucumber\n"
        "import socket, sqlite3, subprocess\n"
        "from suitkaise.cucumber import reconnectors as r\n"
        "sock = socket.socket()\n"
        "conn = sqlite3.connect(':memory:')\n"
        "conn.execute('create table t (x)'); conn.execute('insert into t values (42)')\n"
        "proc = subprocess.Popen([sys.executable, '-c', 'pass']); proc.wait()\n"
        "back = cucumber.deserialize(cucumber.serialize([sock, conn, proc]))\n"
        "assert [type(x) for x in back] == [r.SocketReconnector, r.SQLiteConnectionReconnector,"
        " r.SubprocessReconnector], back\n"
        "live = cucumber.reconnect_all(back, cache={})\n"
        "assert isinstance(live[0], socket.socket) and live[1].execute('select x from t').fetchone() == (42,)\n"
        "live[0].close(); live[1].close(); sock.close(); conn.close()\n"
        "class Refuses:\n"
        "    def __reduce__(self):\n"
        "        raise ValueError('mine')\n"
        "try:\n"
        "    cucumber.serialize(Refuses())\n"
        "except ValueError as e:\n"  # the user's own exception propagates as itself
        "    assert str(e) == 'mine'\n"
        "else:\n"
        "    raise AssertionError('no error')\n"
        "assert '\"__cucumber_type__\": \"list\"' in cucumber.to_json([1])\n"
        "assert 'to_jsonable' in dir(cucumber) and cucumber.ir_to_jsonable(cucumber.serialize_ir(2)) == 2\n"
        "print('ok')\n"
    )
    assert out.stdout.strip() == b"ok"
