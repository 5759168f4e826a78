"""Type coverage of cucumber (spec cucumber.md §7-§8): every row, functionally, both ways.

Each row of the table is one ``Case``: ``build(ctx)`` makes the object,
``check(result, ctx)`` uses the deserialized result the way a program would
(reads the next line, acquires the lock, runs a task ...), and an optional
``after(ctx)`` checks side effects in the sender (a line the receiver logged).

* ``test_same_process``: each case round-trips in this process.
* ``test_fresh_interpreter``: ALL cases are serialized together, sent to one
  fresh interpreter (``sk_testkit.run_fresh``) that runs every ``check``.
* ``test_built_in_fresh_interpreter``: the other direction for a subset: a fresh
  interpreter builds and serializes, this process checks.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import contextvars
import datetime
import decimal
import enum
import fractions
import functools
import io
import logging
import logging.handlers
import mmap
import multiprocessing
import os
import pathlib
import queue
import re
import subprocess
import sys
import tempfile
import threading
import types
import typing
import uuid
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import pytest

from sk_testkit import run_fresh
from suitkaise.cucumber import DeserializationError, SerializationError, deserialize, serialize
from suitkaise.cucumber.placeholders import (
    DeserializedAsyncGenerator,
    DeserializedCoroutine,
    DeserializedFuture,
    DeserializedToken,
    FrameInfo,
    NotTransferableError,
    PendingFutureError,
)


def rt(obj: Any) -> Any:
    return deserialize(serialize(obj))


# -- importable helpers (a fresh interpreter imports this module to resolve them) ----------

Point = collections.namedtuple("Point", "x y", defaults=(0,))


class Pair(typing.NamedTuple):
    a: int
    b: str = "b"


class Movie(typing.TypedDict):
    title: str
    year: int


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Perm(enum.IntFlag):
    R = 4
    W = 2


class Level(enum.IntEnum):
    LOW = 1


class Bits(enum.Flag):
    A = 1
    B = 2


def add(a: int, b: int) -> int:
    return a + b


class Greeter:
    def __init__(self, name: str) -> None:
        self.name = name

    def greet(self) -> str:
        return f"hi {self.name}"


def countdown(n: int) -> Any:
    yield from range(n, 0, -1)


async def async_answer() -> int:
    return 42


async def async_gen() -> Any:
    yield 1


@contextlib.contextmanager
def doubled(x: int) -> Any:
    yield x * 2


@contextlib.asynccontextmanager
async def adoubled(x: int) -> Any:
    yield x * 2


def _init_worker(tag: str) -> None:
    os.environ["SK_CUCUMBER_TEST_INIT"] = tag


def _read_init_tag() -> str:
    return os.environ.get("SK_CUCUMBER_TEST_INIT", "")


class Target:
    """A weak-referenceable value."""

    def __init__(self, v: int) -> None:
        self.v = v


class MyHandler(logging.Handler):
    """A user Handler subclass that keeps records in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[str] = []
        self.tag = "mine"

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())


def _frame_here() -> Any:
    marker = 1  # noqa: F841 - a local whose *name* travels
    return sys._getframe()


# -- cases --------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    build: Callable[[dict[str, Any]], Any]
    check: Callable[[Any, dict[str, Any]], None]
    after: Callable[[dict[str, Any]], None] | None = None
    cleanup: Callable[[Any], None] | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)


CASES: list[Case] = []


def case(name: str, *, after: Any = None, cleanup: Any = None) -> Callable[[Any], Any]:
    """Register ``build`` (the decorated function) with its ``check`` (set via .check)."""

    def deco(build: Any) -> Any:
        c = Case(name, build, lambda r, ctx: None, after, cleanup)
        CASES.append(c)

        def set_check(check: Any) -> Any:
            c.check = check
            return check

        build.check = set_check
        return build

    return deco


def _write(path: str, text: str) -> str:
    with open(path, "w") as f:
        f.write(text)
    return path


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _close(obj: Any) -> None:
    obj.close()


# ---- pickle / cloudpickle rows (no cucumber handler; must still work) --------------------

@case("primitives and builtin containers")
def _b_prims(ctx):
    shared = [1]
    return {
        "n": None, "b": True, "i": 1 << 70, "f": 1.5, "c": 2j, "s": "é", "by": b"\x00",
        "ba": bytearray(b"ab"), "l": [1, [2]], "t": (1, (2,)), "set": {1, 2},
        "fs": frozenset({3}), "shared": (shared, shared),
        "od": collections.OrderedDict(a=1), "dd": collections.defaultdict(list, a=[1]),
        "ctr": collections.Counter("aab"), "dq": collections.deque([1, 2], maxlen=3),
        "cm": collections.ChainMap({"a": 1}, {"b": 2}),
    }


@_b_prims.check
def _c_prims(r, ctx):
    assert r["i"] == 1 << 70 and r["c"] == 2j and r["s"] == "é" and r["ba"] == bytearray(b"ab")
    assert r["shared"][0] is r["shared"][1]
    r["dd"]["new"].append(1)  # default factory kept
    assert r["dd"]["new"] == [1] and r["ctr"].most_common(1) == [("a", 2)]
    r["dq"].extend([3, 4])
    assert list(r["dq"]) == [2, 3, 4]  # maxlen kept
    assert r["cm"]["b"] == 2 and r["fs"] == frozenset({3})


@case("namedtuple / NamedTuple / TypedDict (importable and local)")
def _b_nt(ctx):
    Local = collections.namedtuple("Local", "p q", defaults=(9,))
    return [Point(1), Pair(1), Movie(title="t", year=1), Local(1)]


@_b_nt.check
def _c_nt(r, ctx):
    p, pair, movie, local = r
    assert p == (1, 0) and p.x == 1 and type(p).__name__ == "Point"
    assert pair.b == "b" and pair._fields == ("a", "b")
    assert movie == {"title": "t", "year": 1}
    assert local.q == 9 and type(local)(5).q == 9


@case("enum members and classes (importable and dynamic)")
def _b_enum(ctx):
    Dyn = enum.Enum("Dyn", "X Y")
    return [Color.RED, Perm.R | Perm.W, Level.LOW, Bits.A | Bits.B, Color, Dyn.Y]


@_b_enum.check
def _c_enum(r, ctx):
    assert r[0] is Color.RED and r[1] == 6 and Perm.W in r[1] and r[2] == 1
    assert Bits.A in r[3] and r[4] is Color
    assert r[5].name == "Y" and type(r[5])["X"].value == 1


@case("datetime family, Decimal, Fraction, UUID, Path, PurePath, range, slice, singletons")
def _b_values(ctx):
    tz = datetime.timezone(datetime.timedelta(hours=2))
    return [
        datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=tz), datetime.date(2024, 1, 2),
        datetime.time(1, 2), datetime.timedelta(days=1, seconds=3), decimal.Decimal("1.10"),
        fractions.Fraction(1, 3), uuid.UUID(int=5), pathlib.Path("/a/b"),
        pathlib.PureWindowsPath("c:/x/y"), range(1, 10, 3), slice(1, None, 2), ..., NotImplemented,
    ]


@_b_values.check
def _c_values(r, ctx):
    assert r[0].utcoffset() == datetime.timedelta(hours=2) and r[0].hour == 3
    assert r[1] + datetime.timedelta(days=1) == datetime.date(2024, 1, 3)
    assert r[3].total_seconds() == 86403 and str(r[4]) == "1.10" and r[5] * 3 == 1
    assert r[6].int == 5 and r[7] / "c" == pathlib.Path("/a/b/c") and r[8].parts[-1] == "y"
    assert list(r[9]) == [1, 4, 7] and [0, 1, 2, 3][r[10]] == [1, 3]
    assert r[11] is Ellipsis and r[12] is NotImplemented


@case("re.Pattern, StringIO/BytesIO, CompletedProcess")
def _b_misc(ctx):
    s = io.StringIO("one\ntwo\n")
    s.readline()
    b = io.BytesIO(b"xyz")
    b.seek(1)
    return [re.compile(r"(\d+)-x", re.I), s, b, subprocess.CompletedProcess(["ls"], 0, b"o", b"e")]


@_b_misc.check
def _c_misc(r, ctx):
    assert r[0].match("12-X").group(1) == "12" and r[0].flags & re.I
    assert r[1].readline() == "two\n" and r[2].read() == b"yz"
    assert r[3].returncode == 0 and r[3].stdout == b"o"
    r[3].check_returncode()


@case("functions: module-level, lambda, closure, builtins, partial, bound methods")
def _b_funcs(ctx):
    k = 10

    def closure(x):
        return x + k

    return {
        "add": add, "lambda": lambda x: x * 3, "closure": closure, "len": len,
        "str.upper": str.upper, "bound_builtin": "ab".upper, "method_wrapper": (1).__add__,
        "partial": functools.partial(add, 1), "bound": Greeter("bo").greet,
        "slot": object.__init__, "getset": type.__dict__["__name__"],
    }


@_b_funcs.check
def _c_funcs(r, ctx):
    assert r["add"](1, 2) == 3 and r["lambda"](2) == 6 and r["closure"](1) == 11
    assert r["len"]([1]) == 1 and r["str.upper"]("a") == "A" and r["bound_builtin"]() == "AB"
    assert r["method_wrapper"](2) == 3 and r["partial"](2) == 3 and r["bound"]() == "hi bo"
    assert r["slot"] is object.__init__ and r["getset"].__get__(int) == "int"


@case("staticmethod / classmethod / property objects, code objects, modules")
def _b_descr(ctx):
    return {
        "sm": staticmethod(add), "cm": classmethod(lambda cls: cls.__name__),
        "prop": property(lambda self: self.v * 2, doc="twice"),
        "code": (lambda a: a + 1).__code__, "module": os, "mod2": sys,
    }


@_b_descr.check
def _c_descr(r, ctx):
    class Host:
        sm = r["sm"]
        cm = r["cm"]
        prop = r["prop"]

        def __init__(self):
            self.v = 4

    assert Host.sm(1, 1) == 2 and Host.cm() == "Host" and Host().prop == 8
    assert r["prop"].__doc__ == "twice"
    assert types.FunctionType(r["code"], {})(1) == 2
    assert r["module"] is os and r["mod2"] is sys


# ---- threading / queue (_sync) ---------------------------------------------------------------

@case("threading.Lock (locked and free)")
def _b_lock(ctx):
    locked = threading.Lock()
    locked.acquire()
    return locked, threading.Lock()


@_b_lock.check
def _c_lock(r, ctx):
    locked, free = r
    assert locked.locked() and not locked.acquire(blocking=False)
    locked.release()
    assert locked.acquire(blocking=False)
    assert free.acquire(timeout=5) and free.locked()


@case("threading.RLock (held twice)")
def _b_rlock(ctx):
    rl = threading.RLock()
    rl.acquire()
    rl.acquire()
    return rl, threading.RLock()


def _acquire_elsewhere(lock: Any) -> bool:
    out: list[bool] = []

    def attempt() -> None:
        ok = lock.acquire(blocking=False)
        if ok:
            lock.release()
        out.append(ok)

    t = threading.Thread(target=attempt)
    t.start()
    t.join()
    return out[0]


@_b_rlock.check
def _c_rlock(r, ctx):
    held, free = r
    assert held._is_owned()  # the deserializing thread owns it
    assert not _acquire_elsewhere(held)
    held.release()
    assert held._is_owned()  # count was 2
    held.release()
    assert not held._is_owned()
    assert free.acquire(timeout=5)
    free.release()


@case("Semaphore / BoundedSemaphore (current value)")
def _b_sem(ctx):
    s = threading.Semaphore(3)
    s.acquire()
    b = threading.BoundedSemaphore(2)
    b.acquire()
    return s, b


@_b_sem.check
def _c_sem(r, ctx):
    s, b = r
    assert s.acquire(blocking=False) and s.acquire(blocking=False)
    assert not s.acquire(blocking=False)
    b.release()  # back to the bound
    with pytest.raises(ValueError):
        b.release()
    assert isinstance(b, threading.BoundedSemaphore)


@case("Condition / Event / Barrier")
def _b_cond(ctx):
    lock = threading.Lock()
    cond = threading.Condition(lock)
    ev = threading.Event()
    ev.set()
    return {"cond": cond, "lock": lock, "ev": ev, "clear": threading.Event(),
            "barrier": threading.Barrier(2, timeout=10)}


@_b_cond.check
def _c_cond(r, ctx):
    cond = r["cond"]
    with cond:
        assert r["lock"].locked()  # the condition's lock is the payload's lock: shared kept
        assert not cond.wait(timeout=0.01)
        cond.notify_all()
    assert r["ev"].is_set() and not r["clear"].is_set()
    r["clear"].set()
    assert r["clear"].wait(5)
    barrier = r["barrier"]
    results: list[int] = []
    t = threading.Thread(target=lambda: results.append(barrier.wait()))
    t.start()
    results.append(barrier.wait())
    t.join()
    assert sorted(results) == [0, 1]


@case("threading.local (current thread's attributes)")
def _b_local(ctx):
    loc = threading.local()
    loc.x = 5
    loc.items = [1, 2]
    return loc


@_b_local.check
def _c_local(r, ctx):
    assert r.x == 5 and r.items == [1, 2] and isinstance(r, threading.local)
    seen: list[bool] = []
    t = threading.Thread(target=lambda: seen.append(hasattr(r, "x")))
    t.start()
    t.join()
    assert seen == [False]  # still thread-local


@case("queue.Queue / LifoQueue / PriorityQueue / SimpleQueue (non-destructive copy)")
def _b_queues(ctx):
    out = []
    for cls in (queue.Queue, queue.LifoQueue, queue.PriorityQueue, queue.SimpleQueue):
        q = cls()
        for item in (3, 1, 2):
            q.put(item)
        out.append(q)
    bounded = queue.Queue(maxsize=2)
    bounded.put("a")
    out.append(bounded)
    ctx["__queues__"] = out
    return out


@_b_queues.check
def _c_queues(r, ctx):
    fifo, lifo, prio, simple, bounded = r
    assert [fifo.get_nowait() for _ in range(3)] == [3, 1, 2]
    assert [lifo.get_nowait() for _ in range(3)] == [2, 1, 3]
    assert [prio.get_nowait() for _ in range(3)] == [1, 2, 3]
    assert [simple.get_nowait() for _ in range(3)] == [3, 1, 2]
    assert bounded.maxsize == 2 and bounded.get_nowait() == "a"
    fifo.task_done()
    for orig in ctx.get("__queues__", []):  # in-process: the original kept its items
        assert orig.qsize() == (3 if orig is not ctx["__queues__"][-1] else 1)


# ---- files (_io) ----------------------------------------------------------------------------

@case("open text file: reopened by path, same mode/encoding/newline, next line", cleanup=_close)
def _b_text(ctx):
    path = _write(ctx["text_path"], "line1\nline2\nline3\n")
    f = open(path, encoding="utf-8", newline="\n")
    f.readline()
    return f


@_b_text.check
def _c_text(r, ctx):
    assert isinstance(r, io.TextIOWrapper) and r.mode == "r" and r.name == ctx["text_path"]
    assert r.readline() == "line2\n" and r.encoding == "utf-8"
    r.close()


@case("binary files: BufferedReader, BufferedRandom, FileIO", cleanup=lambda fs: [f.close() for f in fs])
def _b_bin(ctx):
    path = ctx["bin_path"]
    with open(path, "wb") as f:
        f.write(b"0123456789")
    rb = open(path, "rb")
    rb.seek(2)
    rplus = open(path, "r+b")
    rplus.seek(5)
    raw = open(path, "rb", buffering=0)
    raw.seek(7)
    return [rb, rplus, raw]


@_b_bin.check
def _c_bin(r, ctx):
    rb, rplus, raw = r
    assert type(rb) is io.BufferedReader and rb.read(2) == b"23"
    assert type(rplus) is io.BufferedRandom and rplus.read(1) == b"5"
    assert type(raw) is io.FileIO and raw.read() == b"789"
    for f in r:
        f.close()


def _after_writes(ctx):
    assert _read(ctx["w_path"]) == "sender\nreceiver\n"  # 'w' reopened WITHOUT truncation
    assert _read(ctx["a_path"]) == "old\nsender\nreceiver\n"
    assert _read(ctx["wplus_path"]) == "abXY"


@case("files opened 'w', 'a', 'w+': flushed, never truncated, position kept",
      after=_after_writes, cleanup=lambda fs: [f.close() for f in fs])
def _b_writes(ctx):
    w = open(ctx["w_path"], "w")
    w.write("sender\n")
    a = open(_write(ctx["a_path"], "old\n"), "a")
    a.write("sender\n")
    wplus = open(ctx["wplus_path"], "w+")
    wplus.write("abcd")
    wplus.seek(2)
    return [w, a, wplus]


@_b_writes.check
def _c_writes(r, ctx):
    w, a, wplus = r
    assert w.mode == "w" and not w.readable()  # still write-only
    w.write("receiver\n")
    a.write("receiver\n")
    assert a.mode == "a"
    assert wplus.mode == "w+" and wplus.read() == "cd"
    wplus.seek(2)
    wplus.write("XY")
    for f in r:
        f.close()


@case("closed file comes back closed; missing file raises FileNotFoundError naming it")
def _b_closed(ctx):
    f = open(_write(ctx["closed_path"], "x"))
    f.close()
    return f


@_b_closed.check
def _c_closed(r, ctx):
    assert r.closed and r.name == ctx["closed_path"]
    with pytest.raises(ValueError):
        r.read()


@case("sys.stdout / sys.stderr / binary buffer map to the receiver's")
def _b_std(ctx):
    return [sys.stdout, sys.stderr, sys.__stdout__.buffer]


@_b_std.check
def _c_std(r, ctx):
    assert r[0] is sys.stdout and r[1] is sys.stderr
    assert r[2] is sys.stdout.buffer or r[2] is sys.__stdout__.buffer


def _cleanup_ntf(objs):
    for t in objs:
        t.close()


@case("NamedTemporaryFile: new temp file, same content/position, deleted on close",
      cleanup=_cleanup_ntf)
def _b_ntf(ctx):
    t = tempfile.NamedTemporaryFile("w+", prefix="sk-ntf-", suffix=".txt")
    t.write("hello\nworld\n")
    t.seek(6)
    b = tempfile.NamedTemporaryFile(prefix="sk-ntfb-")
    b.write(b"bytes!")
    b.seek(0)
    ctx["__ntf_names__"] = [t.name, b.name]
    return [t, b]


@_b_ntf.check
def _c_ntf(r, ctx):
    t, b = r
    assert t.name not in ctx.get("__ntf_names__", []) and t.name.endswith(".txt")
    assert os.path.basename(t.name).startswith("sk-ntf-")
    assert t.read() == "world\n" and b.read() == b"bytes!"
    names = [t.name, b.name]
    t.close()
    b.close()
    assert not any(os.path.exists(n) for n in names)  # delete=True holds in the receiver


@case("TemporaryFile (unlinked): copied into a new TemporaryFile", cleanup=_close)
def _b_tmpfile(ctx):
    f = tempfile.TemporaryFile()
    f.write(b"abcdef")
    f.seek(3)
    return f


@_b_tmpfile.check
def _c_tmpfile(r, ctx):
    assert r.read() == b"def"
    r.seek(0)
    assert r.read() == b"abcdef"
    r.close()


@case("SpooledTemporaryFile (in memory, text, and rolled over)", cleanup=lambda fs: [f.close() for f in fs])
def _b_spooled(ctx):
    mem = tempfile.SpooledTemporaryFile(100)
    mem.write(b"spool")
    mem.seek(1)
    text = tempfile.SpooledTemporaryFile(100, "w+")
    text.write("txt\nmore")
    text.seek(4)
    rolled = tempfile.SpooledTemporaryFile(4)
    rolled.write(b"0123456789")
    rolled.seek(8)
    return [mem, text, rolled]


@_b_spooled.check
def _c_spooled(r, ctx):
    mem, text, rolled = r
    assert all(isinstance(x, tempfile.SpooledTemporaryFile) for x in r)
    assert mem.read() == b"pool" and not mem._rolled
    assert text.read() == "more"
    assert rolled._rolled and rolled.read() == b"89"
    for f in r:
        f.close()


@case("anonymous mmap and memoryview")
def _b_mmap(ctx):
    m = mmap.mmap(-1, 16)
    m.write(b"mapped")
    mv = memoryview(bytearray(b"\x01\x00\x02\x00")).cast("H")
    ro = memoryview(b"readonly")
    return [m, mv, ro]


@_b_mmap.check
def _c_mmap(r, ctx):
    m, mv, ro = r
    assert m[:6] == b"mapped" and m.tell() == 6 and len(m) == 16
    m.write(b"!")
    assert m[6:7] == b"!"
    assert isinstance(mv, memoryview) and mv.format == "H" and mv.tolist() == [1, 2]
    mv[0] = 7
    assert mv.tolist() == [7, 2]
    assert ro.readonly and ro.tobytes() == b"readonly"


# ---- logging ---------------------------------------------------------------------------------

def _after_logger(ctx):
    assert "sk.cucumber.test record from receiver" in _read(ctx["log_path"])
    assert "rotating from receiver" in _read(ctx["rot_path"])


def _cleanup_logger(objs):
    logger = objs["logger"]
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    objs["rot"].close()


@case("Logger with FileHandler/StreamHandler/Formatter/filter; RotatingFileHandler; RootLogger",
      after=_after_logger, cleanup=_cleanup_logger)
def _b_logger(ctx):
    logger = logging.getLogger("sk.cucumber.test")
    for h in list(logger.handlers):
        logger.removeHandler(h)
    fh = logging.FileHandler(ctx["log_path"], mode="w")
    fh.setFormatter(logging.Formatter("%(name)s %(message)s"))
    fh.setLevel(logging.INFO)
    logger.addHandler(fh)
    logger.addHandler(logging.StreamHandler(sys.stderr))
    logger.addFilter(logging.Filter("sk.cucumber"))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.info("sender line")
    rot = logging.handlers.RotatingFileHandler(ctx["rot_path"], maxBytes=10_000, backupCount=2)
    return {"logger": logger, "rot": rot, "root": logging.getLogger(),
            "fmt": logging.Formatter("[%(levelname)s] %(message)s", datefmt="%H"),
            "mine": MyHandler()}


@_b_logger.check
def _c_logger(r, ctx):
    logger = r["logger"]
    assert logger is logging.getLogger("sk.cucumber.test")  # the singleton
    assert logger.level == logging.INFO and logger.propagate is False
    files = [h for h in logger.handlers if isinstance(h, logging.FileHandler)]
    streams = [h for h in logger.handlers if type(h) is logging.StreamHandler]
    assert len(files) == 1 and len(streams) == 1  # never duplicated
    assert streams[0].stream is sys.stderr
    assert files[0].baseFilename == ctx["log_path"] and files[0].level == logging.INFO
    assert any(isinstance(f, logging.Filter) for f in logger.filters)
    logger.info("record from receiver")
    files[0].flush()
    rot = r["rot"]
    assert isinstance(rot, logging.handlers.RotatingFileHandler) and rot.maxBytes == 10_000
    assert rot.mode == "a" and rot.lock.acquire(timeout=5)
    rot.lock.release()
    rot.handle(logging.makeLogRecord({"msg": "rotating from receiver"}))
    rot.flush()
    assert r["root"] is logging.getLogger()
    rec = logging.makeLogRecord({"msg": "m", "levelname": "INFO"})
    assert r["fmt"].format(rec) == "[INFO] m"
    mine = r["mine"]
    assert isinstance(mine, MyHandler) and mine.tag == "mine"
    mine.handle(rec)
    assert mine.records == ["m"]


# ---- generators, coroutines, futures, executors (_concurrency) ----------------------------

@case("generator / iterators: remaining values; the original is exhausted")
def _b_gen(ctx):
    g = countdown(4)
    next(g)
    it = iter([1, 2, 3])
    next(it)
    ctx["__gen__"] = g
    return {"gen": g, "expr": (x * 2 for x in range(3)), "iter": it,
            "zip": zip(countdown(2), "ab", strict=True), "enum": enumerate("xy"), "map": map(str, [1])}


@_b_gen.check
def _c_gen(r, ctx):
    assert list(r["gen"]) == [3, 2, 1] and list(r["expr"]) == [0, 2, 4]
    assert list(r["iter"]) == [2, 3] and list(r["zip"]) == [(2, "a"), (1, "b")]
    assert list(r["enum"]) == [(0, "x"), (1, "y")] and list(r["map"]) == ["1"]
    if "__gen__" in ctx:
        assert list(ctx["__gen__"]) == []  # documented: serializing drains the generator


def _close_coros(objs):
    objs["coro"].close()


@case("coroutine / async generator -> placeholders that refuse to run", cleanup=_close_coros)
def _b_coro(ctx):
    return {"coro": async_answer(), "agen": async_gen()}


@_b_coro.check
def _c_coro(r, ctx):
    coro, agen = r["coro"], r["agen"]
    assert isinstance(coro, DeserializedCoroutine) and coro.__qualname__ == "async_answer"
    assert coro.state == "CORO_CREATED"

    async def use_coro():
        return await coro

    with pytest.raises(NotTransferableError, match="async_answer"):
        asyncio.run(use_coro())
    assert isinstance(agen, DeserializedAsyncGenerator)

    async def use_agen():
        async for _ in agen:
            pass

    with pytest.raises(NotTransferableError):
        asyncio.run(use_agen())


@case("asyncio.Future / Task -> DeserializedFuture")
def _b_afut(ctx):
    async def main():
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        done.set_result(5)
        failed = loop.create_future()
        failed.set_exception(ValueError("bad"))
        cancelled = loop.create_future()
        cancelled.cancel()
        task = asyncio.create_task(async_answer(), name="answer-task")
        await task
        pending = loop.create_future()
        payload = serialize([done, failed, cancelled, task, pending])
        pending.cancel()
        return payload

    return _Raw(asyncio.run(main()))


class _Raw:
    """Already-serialized bytes (asyncio objects must be serialized inside their loop)."""

    def __init__(self, data: bytes) -> None:
        self.data = data


@_b_afut.check
def _c_afut(r, ctx):
    done, failed, cancelled, task, pending = deserialize(r.data)
    assert all(isinstance(f, DeserializedFuture) for f in (done, failed, cancelled, task, pending))
    assert done.done() and done.result() == 5
    assert isinstance(failed.exception(), ValueError) and str(failed.exception()) == "bad"
    with pytest.raises(ValueError):
        failed.result()
    assert cancelled.cancelled()
    with pytest.raises(asyncio.CancelledError):
        cancelled.result()
    assert task.is_task and task.get_name() == "answer-task" and task.result() == 42
    assert not pending.done()
    with pytest.raises(asyncio.InvalidStateError):
        pending.result()

    async def await_them():
        return await done

    assert asyncio.run(await_them()) == 5


@case("concurrent.futures.Future: done keeps result/exception, pending -> PendingFutureError")
def _b_cff(ctx):
    ok, bad, cancelled = Future(), Future(), Future()
    ok.set_result({"v": 1})
    bad.set_exception(KeyError("k"))
    cancelled.cancel()
    return [ok, bad, cancelled, Future()]


@_b_cff.check
def _c_cff(r, ctx):
    ok, bad, cancelled, pending = r
    assert ok.result(timeout=5) == {"v": 1}
    with pytest.raises(KeyError):
        bad.result(timeout=5)
    assert cancelled.cancelled()
    assert pending.done()  # never hangs a waiter
    with pytest.raises(PendingFutureError, match="PENDING"):
        pending.result(timeout=5)


def _shutdown_all(objs):
    for ex in objs:
        ex.shutdown(wait=True)


@case("ThreadPoolExecutor / ProcessPoolExecutor -> fresh executor that runs tasks",
      cleanup=_shutdown_all)
def _b_exec(ctx):
    return [ThreadPoolExecutor(3, thread_name_prefix="skpool"),
            ProcessPoolExecutor(1, initializer=_init_worker, initargs=("tagged",))]


@_b_exec.check
def _c_exec(r, ctx):
    tpe, ppe = r
    try:
        assert tpe._max_workers == 3
        assert tpe.submit(lambda: threading.current_thread().name).result(30).startswith("skpool")
        assert ppe._max_workers == 1
        assert ppe.submit(_read_init_tag).result(60) == "tagged"
    finally:
        tpe.shutdown(wait=True)
        ppe.shutdown(wait=True)


# ---- weak references, contextvars, frames, context managers --------------------------------

@case("weakref.ref / WeakMethod / WeakValueDictionary / WeakKeyDictionary / WeakSet")
def _b_weak(ctx):
    a, b = Target(1), Target(2)
    dead = weakref.ref(Target(3))
    return {
        "a": a, "b": b, "ref": weakref.ref(a), "dead": dead, "wm": weakref.WeakMethod(Greeter("w").greet),
        "wvd": weakref.WeakValueDictionary({"a": a}), "wkd": weakref.WeakKeyDictionary({b: "bee"}),
        "ws": weakref.WeakSet([a, b]),
    }


@_b_weak.check
def _c_weak(r, ctx):
    assert r["ref"]() is r["a"] and r["dead"]() is None
    assert isinstance(r["wm"], weakref.WeakMethod)
    assert r["wvd"]["a"] is r["a"] and r["wkd"][r["b"]] == "bee"
    assert set(r["ws"]) == {r["a"], r["b"]}
    ref = r["ref"]
    del r["a"]
    import gc

    gc.collect()
    assert "a" not in r["wvd"] or r["wvd"]["a"] is ref()  # still weak in the receiver


@case("contextvars.ContextVar (same name/default) and Token (placeholder)")
def _b_cvar(ctx):
    var = contextvars.ContextVar("sk_var", default=7)
    nodefault = contextvars.ContextVar("sk_nodefault")
    token_ctx = contextvars.copy_context()
    token = token_ctx.run(var.set, 99)
    return {"var": var, "nodefault": nodefault, "token": token}


@_b_cvar.check
def _c_cvar(r, ctx):
    var = r["var"]
    assert isinstance(var, contextvars.ContextVar) and var.name == "sk_var"
    assert contextvars.Context().run(var.get) == 7
    with pytest.raises(LookupError):
        contextvars.Context().run(r["nodefault"].get)
    token = r["token"]
    assert isinstance(token, DeserializedToken) and token.var is var
    assert token.old_value_missing and token.old_value is contextvars.Token.MISSING


@case("frame -> FrameInfo; @contextmanager objects recreated")
def _b_frame(ctx):
    return {"frame": _frame_here(), "cm": doubled(21), "acm": adoubled(2)}


@_b_frame.check
def _c_frame(r, ctx):
    fi = r["frame"]
    assert isinstance(fi, FrameInfo) and fi.function == "_frame_here"
    assert fi.filename.endswith("test_cucumber_types.py") and "marker" in fi.local_names
    with r["cm"] as v:
        assert v == 42

    async def use():
        async with r["acm"] as v:
            return v

    assert asyncio.run(use()) == 4


# ---- multiprocessing (_mp) -----------------------------------------------------------------

def _cleanup_mp(objs):
    objs["shm"].close()
    objs["shm"].unlink()


def _after_mp(ctx):
    shm = SharedMemory(ctx["shm_name"])
    try:
        assert bytes(shm.buf[:7]) == b"written"  # the receiver wrote into the same segment
    finally:
        shm.close()


@case("multiprocessing SharedMemory", after=_after_mp, cleanup=_cleanup_mp)
def _b_mp(ctx):
    shm = SharedMemory(create=True, size=64)
    shm.buf[:5] = b"hello"
    ctx["shm_name"] = shm.name
    return {"shm": shm}


@_b_mp.check
def _c_mp(r, ctx):
    shm = r["shm"]
    assert shm.name == ctx["shm_name"] and bytes(shm.buf[:5]) == b"hello"
    shm.buf[:7] = b"written"
    shm.close()


# -- the tests --------------------------------------------------------------------------------


def _ctx(tmp_path: pathlib.Path) -> dict[str, Any]:
    names = ["text", "bin", "w", "a", "wplus", "closed", "log", "rot"]
    return {f"{n}_path": str(tmp_path / f"{n}.dat") for n in names}


@pytest.mark.parametrize("c", CASES, ids=[c.name for c in CASES])
def test_same_process(c: Case, tmp_path: pathlib.Path) -> None:
    ctx = _ctx(tmp_path)
    obj = c.build(ctx)
    try:
        result = rt(obj) if not isinstance(obj, _Raw) else obj
        c.check(result, ctx)
        if c.after is not None:
            c.after(ctx)
    finally:
        if c.cleanup is not None:
            c.cleanup(obj)


_CHILD_CHECK = """
import sys, pickle
import test_cucumber_types as t
t._child_checks(sys.stdin.buffer.read())
"""


def _child_checks(data: bytes) -> None:
    """Runs in the fresh interpreter: every case's check against the payload."""
    from suitkaise.cucumber import deserialize as _deserialize

    ctx, results = _deserialize(data)
    failures = []
    for c in CASES:
        try:
            c.check(results[c.name], ctx)
        except BaseException as exc:  # report all failing rows at once
            failures.append(f"{c.name}: {type(exc).__name__}: {exc}")
    if failures:
        raise AssertionError("fresh interpreter failures:\n" + "\n".join(failures))
    print("checked", len(CASES))


def test_fresh_interpreter(tmp_path: pathlib.Path) -> None:
    ctx = _ctx(tmp_path)
    built: dict[str, Any] = {}
    try:
        for c in CASES:
            built[c.name] = c.build(ctx)
        send_ctx = {k: v for k, v in ctx.items() if not k.startswith("__")}
        data = serialize((send_ctx, built))
        proc = run_fresh(_CHILD_CHECK, stdin=data, timeout=120)
        assert proc.stdout.decode().strip().endswith(f"checked {len(CASES)}")
        assert b"leaked shared_memory" not in proc.stderr  # attach did not register the segment
        for c in CASES:
            if c.after is not None:
                c.after(ctx)
    finally:
        for c in CASES:
            if c.cleanup is not None and c.name in built:
                c.cleanup(built[c.name])


_CHILD_BUILD = r"""
import base64, logging, sys, threading
from suitkaise.cucumber import serialize
import test_cucumber_types as t
path, log_path = sys.stdin.read().split("\n")[:2]
lock = threading.Lock(); lock.acquire()
f = open(path); f.readline()
logger = logging.getLogger("sk.cucumber.child")
logger.addHandler(logging.FileHandler(log_path))
logger.setLevel(logging.DEBUG)
g = t.countdown(3); next(g)
sys.stdout.write(base64.b64encode(serialize({"lock": lock, "file": f, "logger": logger, "gen": g,
    "local_fn": lambda x: x + 1, "cls": t.Target})).decode())
"""


def test_built_in_fresh_interpreter(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "child.txt"
    path.write_text("first\nsecond\n")
    log_path = tmp_path / "child.log"
    proc = run_fresh(_CHILD_BUILD, stdin=f"{path}\n{log_path}\n".encode())
    r = deserialize(base64.b64decode(proc.stdout))
    logger = r["logger"]
    try:
        assert r["lock"].locked()
        assert r["file"].readline() == "second\n"
        assert logger is logging.getLogger("sk.cucumber.child") and logger.level == logging.DEBUG
        logger.debug("parent wrote this")
        for h in logger.handlers:
            h.flush()
        assert "parent wrote this" in log_path.read_text()
        assert list(r["gen"]) == [2, 1] and r["local_fn"](1) == 2 and r["cls"] is Target
    finally:
        r["file"].close()
        for h in list(logger.handlers):
            logger.removeHandler(h)
            h.close()


# -- refusals and errors ---------------------------------------------------------------------------


def test_missing_file_is_a_clear_deserialization_error(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "gone.txt"
    path.write_text("x")
    with open(path) as f:
        data = serialize(f)
    path.unlink()
    with pytest.raises(DeserializationError) as info:
        deserialize(data)
    assert "FileNotFoundError" in str(info.value) and str(path) in str(info.value)


def test_pipe_backed_file_is_refused() -> None:
    r, w = os.pipe()
    with open(r, "rb", buffering=0) as pf, open(w, "wb") as wf:
        with pytest.raises(SerializationError, match="pipe"):
            serialize(pf)
        with pytest.raises(SerializationError, match="pipe"):
            serialize(wf)


def test_file_being_iterated_is_refused_clearly(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "it.txt"
    path.write_text("a\nb\nc\n")
    with open(path) as f:
        next(f)
        with pytest.raises(SerializationError, match="readline"):
            serialize(f)


def test_file_backed_mmap_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "m.bin"
    path.write_bytes(b"abcd")
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        with pytest.raises(SerializationError, match="file-backed"):
            serialize(m)


def test_manager_is_refused_and_proxies_are_snapshots() -> None:
    with multiprocessing.Manager() as mgr:
        d = mgr.dict(a=1)
        lst = mgr.list([1, 2])
        ns = mgr.Namespace(x=3)
        with pytest.raises(SerializationError, match="manager"):
            serialize(mgr)
        rd, rl, rns = rt([d, lst, ns])
    assert rd == {"a": 1} and type(rd) is dict  # usable after the manager is gone
    assert rl == [1, 2] and rns.x == 3



_MP_SHARED = {
    "Queue": lambda: multiprocessing.Queue(),
    "JoinableQueue": lambda: multiprocessing.JoinableQueue(),
    "SimpleQueue": lambda: multiprocessing.SimpleQueue(),
    "Event": lambda: multiprocessing.Event(),
    "Lock": lambda: multiprocessing.Lock(),
    "RLock": lambda: multiprocessing.RLock(),
    "Semaphore": lambda: multiprocessing.Semaphore(),
    "BoundedSemaphore": lambda: multiprocessing.BoundedSemaphore(),
    "Condition": lambda: multiprocessing.Condition(),
    "Barrier": lambda: multiprocessing.Barrier(2),
    "Value": lambda: multiprocessing.Value("i", 0),
    "Array": lambda: multiprocessing.Array("i", 3),
    "RawValue/RawArray": lambda: multiprocessing.RawValue("i", 0),
}


@pytest.mark.parametrize("kind", sorted(_MP_SHARED))
def test_multiprocessing_shared_objects_are_refused_never_copied(kind: str) -> None:
    # A copy would be a different queue, lock or memory: what the receiver puts or sets
    # would silently never reach the sender (they used to be copied: a queue snapshot, an
    # event's flag). They are shared only with a process being started (see _handoff).
    obj = _MP_SHARED[kind]()
    with pytest.raises(SerializationError) as info:
        serialize({"jobs": [obj]})
    text = str(info.value)
    assert "root['jobs'][0]" in text and f"multiprocessing {kind}" in text
    assert "Skprocess" in text and "Share" in text and "tell()/listen()" in text
    if hasattr(obj, "close"):
        obj.close()


def test_endless_generator_is_refused_not_hung() -> None:
    import itertools

    def endless():
        yield from itertools.count()

    with pytest.raises(SerializationError, match="100,000"):
        serialize(endless())


def test_newline_and_encoding_round_trip(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "nl.txt"
    for newline in (None, "", "\n", "\r", "\r\n"):
        with open(path, "w", encoding="latin-1", newline=newline, errors="replace") as f:
            f.write("é")
            r = rt(f)
            r.write("\n")
            r.close()
        expected = {None: b"\xe9\n", "": b"\xe9\n", "\n": b"\xe9\n", "\r": b"\xe9\r",
                    "\r\n": b"\xe9\r\n"}[newline]
        assert path.read_bytes() == expected, newline
        assert r.encoding == "latin-1" and r.errors == "replace"


def test_text_wrapper_over_memory_buffer() -> None:
    t = io.TextIOWrapper(io.BytesIO(), encoding="utf-16")
    t.write("hello world")
    t.seek(0)
    t.read(6)
    r = rt(t)
    assert r.read() == "world" and r.encoding == "utf-16"


def test_shared_memory_missing_segment_is_clear() -> None:
    shm = SharedMemory(create=True, size=8)
    data = serialize(shm)
    shm.close()
    shm.unlink()
    with pytest.raises(DeserializationError, match="unlinked"):
        deserialize(data)


def test_handler_modules_do_not_import_what_they_handle() -> None:
    proc = run_fresh(
        "import sys, suitkaise.cucumber\n"
        "heavy = [m for m in ('asyncio', 'concurrent.futures', 'multiprocessing', 'mmap', "
        "'queue', 'contextvars', 'logging.handlers', 'multiprocessing.shared_memory') "
        "if m in sys.modules]\n"
        "print(heavy)\n"
    )
    assert proc.stdout.decode().strip() == "[]"
