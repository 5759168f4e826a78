"""cucumber's core contract: identity, cycles, depth, exceptions, classes, errors, the inspection view."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sk_testkit import run_fresh, run_script
from suitkaise import cucumber
from suitkaise.cucumber import DeserializationError, SerializationError, deserialize, serialize


def roundtrip(obj: Any) -> Any:
    return deserialize(serialize(obj))


# -- identity and cycles --------------------------------------------------------

class Node:
    def __init__(self, name: str) -> None:
        self.name = name
        self.parent: Node | None = None
        self.children: list[Node] = []
        self.callback = self.describe  # an attribute bound to the object itself

    def describe(self) -> str:
        return f"node {self.name}"


def test_parent_child_cycle_and_self_bound_method() -> None:
    root, child = Node("root"), Node("child")
    root.children.append(child)
    child.parent = root
    r = roundtrip(root)
    assert r.children[0].parent is r
    assert r.callback.__self__ is r
    assert r.callback() == "node root"
    assert r.children[0].callback.__self__ is r.children[0]


def test_shared_references_stay_shared() -> None:
    a = [1]
    s = {"x": 1}
    r = roundtrip({"first": [a, a], "second": (s, s), "third": a})
    assert r["first"][0] is r["first"][1] is r["third"]
    assert r["second"][0] is r["second"][1]


def test_self_referencing_containers() -> None:
    lst: list[Any] = [1]
    lst.append(lst)
    d: dict[str, Any] = {}
    d["me"] = d
    r_lst, r_d = roundtrip((lst, d))
    assert r_lst[1] is r_lst
    assert r_d["me"] is r_d


def test_cycle_through_a_tuple() -> None:
    t: tuple[list[Any]] = ([],)
    t[0].append(t)
    r = roundtrip(t)
    assert r[0][0] is r


def test_set_and_frozenset_of_objects() -> None:
    fs = frozenset({1, "a", (2, 3)})
    r = roundtrip({"set": {1, 2}, "frozen": fs, "key": {fs: "v"}})
    assert r["set"] == {1, 2} and r["frozen"] == fs and r["key"][fs] == "v"


# -- depth -----------------------------------------------------------------------

@pytest.mark.parametrize("depth", [10_000, 100_000])
def test_deep_nested_lists_round_trip(depth: int) -> None:
    root: list[Any] = []
    cur = root
    for _ in range(depth):
        nxt: list[Any] = []
        cur.append(nxt)
        cur = nxt
    cur.append("bottom")
    r = roundtrip(root)
    for _ in range(depth):
        r = r[0]
    assert r == ["bottom"]


class Link:
    def __init__(self, nxt: Link | None, i: int) -> None:
        self.nxt = nxt
        self.i = i
        self.items = [i]


def test_deep_object_chain_round_trips() -> None:
    head = None
    for i in range(10_000):
        head = Link(head, i)
    r = roundtrip(head)
    seen = 0
    while r is not None:
        assert r.items == [r.i]
        r = r.nxt
        seen += 1
    assert seen == 10_000


def test_deep_dicts_and_tuples() -> None:
    d: dict[str, Any] = {"leaf": True}
    t: Any = ("leaf",)
    for _ in range(10_000):
        d = {"down": d}
        t = (t,)
    rd, rt = roundtrip((d, t))
    for _ in range(10_000):
        rd, rt = rd["down"], rt[0]
    assert rd == {"leaf": True} and rt == ("leaf",)


# -- exceptions ------------------------------------------------------------------

class TwoArgError(Exception):
    def __init__(self, code: int, what: str) -> None:
        super().__init__(f"{code}: {what}")
        self.code = code
        self.what = what


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_user_exception_keeps_type_args_message_and_attributes() -> None:
    r = roundtrip(_raised(TwoArgError(7, "bad")))
    assert type(r) is TwoArgError
    assert r.args == ("7: bad",) and str(r) == "7: bad"
    assert (r.code, r.what) == (7, "bad")
    assert "TwoArgError: 7: bad" in r.__remote_traceback__
    assert "Traceback (most recent call last)" in r.__remote_traceback__


def test_remote_traceback_is_captured_once_and_kept_through_a_second_trip() -> None:
    from suitkaise.cucumber import remote_traceback

    local = _raised(ValueError("first"))
    serialize(local)
    assert "__remote_traceback__" not in local.__dict__  # serializing changes nothing
    arrived = roundtrip(local)
    origin = arrived.__remote_traceback__
    assert "_raised" in origin and "ValueError: first" in origin
    reraised = _raised(arrived)  # caught here and sent on: still says where it started
    assert roundtrip(reraised).__remote_traceback__ == origin
    assert remote_traceback(reraised) == origin
    fresh = _raised(KeyError("k"))
    text = remote_traceback(fresh)
    assert "KeyError" in text and fresh.__remote_traceback__ == text  # stored for the trip


def test_exception_chains_travel() -> None:
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise ValueError("outer") from inner
    except ValueError as outer:
        r = roundtrip(outer)
    assert isinstance(r.__cause__, KeyError) and r.__cause__.args == ("inner",)
    assert r.__suppress_context__


def test_oserror_keeps_errno_and_filename() -> None:
    r = roundtrip(FileNotFoundError(2, "No such file", "x.txt"))
    assert type(r) is FileNotFoundError
    assert (r.errno, r.strerror, r.filename) == (2, "No such file", "x.txt")


def test_builtin_exceptions_round_trip() -> None:
    for exc in (ValueError("v"), KeyError("k"), StopIteration(3), SystemExit(2), KeyboardInterrupt()):
        r = roundtrip(exc)
        assert type(r) is type(exc) and r.args == exc.args


# -- functions and classes ------------------------------------------------------

def test_lambda_closure_and_partial() -> None:
    import functools

    base = 10

    def make_adder(n: int) -> Any:
        def add(x: int) -> int:
            return x + n + base
        return add

    f, g, h = roundtrip((lambda x: x * 2, make_adder(5), functools.partial(pow, 2)))
    assert (f(4), g(1), h(5)) == (8, 16, 32)


FUNCTIONS_SCRIPT = textwrap.dedent(
    """
    import concurrent.futures
    import sys

    import cloudpickle

    from suitkaise.cucumber import serialize

    OFFSET = 7


    def make_scaler(factor):
        def scale(x):
            return x * factor + OFFSET

        return scale


    def documented(a, b=2, *, c=3) -> int:
        "Adds."
        return a + b + c


    def undocumented():
        "Gone."


    undocumented.__doc__ = None  # the code still starts with the string


    def renamed():
        return concurrent.futures.Future  # a submodule the receiver must import


    renamed.__name__, renamed.__qualname__ = "other", "Other.other"
    renamed.tag = "kept"
    small = (make_scaler(3), lambda x: x * x - OFFSET)
    if sys.argv[1] == "ratio":
        print(len(serialize(small)) / len(cloudpickle.dumps(small, protocol=5)))
    else:
        sys.stdout.buffer.write(serialize((small, documented, undocumented, renamed)))
    """
)


def test_by_value_functions_keep_every_attribute_in_a_fresh_interpreter(tmp_path: Path) -> None:
    # The function state leaves out what the rebuilt function has anyway: what differs
    # from those defaults (and the submodules to import) must still arrive.
    script = tmp_path / "funcs.py"
    script.write_text(FUNCTIONS_SCRIPT)
    payload = run_script(script, "dump").stdout
    out = run_fresh(
        "import sys\n"
        "from suitkaise.cucumber import deserialize\n"
        "(scale, square), documented, undocumented, renamed = deserialize(sys.stdin.buffer.read())\n"
        "assert (scale(2), square(3)) == (13, 2)\n"
        "assert (scale.__name__, scale.__qualname__) == ('scale', 'make_scaler.<locals>.scale')\n"
        "assert square.__name__ == '<lambda>' and square.__doc__ is None\n"
        "assert documented(1) == 6 and documented(1, 1, c=1) == 3\n"
        "assert documented.__defaults__ == (2,) and documented.__kwdefaults__ == {'c': 3}\n"
        "assert documented.__doc__ == 'Adds.' and documented.__annotations__ == {'return': int}\n"
        "assert undocumented.__doc__ is None, undocumented.__doc__\n"
        "assert (renamed.__name__, renamed.__qualname__, renamed.tag) == ('other', 'Other.other', 'kept')\n"
        "assert 'concurrent.futures' in sys.modules and renamed() is sys.modules['concurrent.futures'].Future\n"
        "assert (scale.__defaults__, scale.__kwdefaults__, scale.__annotations__) == (None, None, {})\n"
        "print('ok')\n",
        stdin=payload,
    )
    assert out.stdout.strip() == b"ok"


def test_small_script_functions_cost_at_most_a_tenth_more_than_cloudpickle(tmp_path: Path) -> None:
    # They carry their source lines for the receiver's tracebacks; the function state
    # leaves out its default entries, which pays for them (it was 1.15x before).
    script = tmp_path / "funcs.py"
    script.write_text(FUNCTIONS_SCRIPT)
    assert float(run_script(script, "ratio").stdout) <= 1.1


def test_local_class_keeps_dunders_static_and_class_methods() -> None:
    @dataclasses.dataclass
    class Point:
        x: int
        y: int = 0

        def __len__(self) -> int:
            return 2

        @staticmethod
        def origin() -> tuple[int, int]:
            return (0, 0)

        @classmethod
        def make(cls, x: int) -> Point:
            return cls(x, x)

        @property
        def total(self) -> int:
            return self.x + self.y

    r = roundtrip(Point(1, 2))
    assert r == Point(1, 2)  # same process: cloudpickle gives back the very class
    assert type(r) is Point
    assert len(r) == 2 and r.origin() == (0, 0) and r.make(3).total == 6


def test_importable_class_and_function_travel_by_reference() -> None:
    assert roundtrip(Node) is Node
    assert roundtrip(roundtrip) is roundtrip
    assert roundtrip(os.path.join) is os.path.join


def test_custom_protocol_static_and_class_methods_any_state() -> None:
    class WithStatic:
        def __init__(self, v: int) -> None:
            self.v = v
            self.lock = threading.Lock()

        def __serialize__(self) -> list[int]:
            return [self.v]

        @staticmethod
        def __deserialize__(state: list[int]) -> WithStatic:
            return WithStatic(state[0] + 1)

    class WithClassmethod:
        def __init__(self, v: str) -> None:
            self.v = v

        def __serialize__(self) -> str:
            return self.v

        @classmethod
        def __deserialize__(cls, state: str) -> WithClassmethod:
            return cls(state.upper())

    a, b = roundtrip((WithStatic(1), WithClassmethod("x")))
    assert a.v == 2 and b.v == "X"


def test_only_serialize_defined_means_plain_dict() -> None:
    class Half:
        def __init__(self) -> None:
            self.v = 3

        def __serialize__(self) -> str:  # no __deserialize__: ignored
            raise AssertionError("must not be called")

    assert roundtrip(Half()).v == 3


def test_getstate_setstate_are_honoured() -> None:
    class Stateful:
        def __init__(self) -> None:
            self.keep = 1
            self.cache = threading.Lock()

        def __getstate__(self) -> dict[str, int]:
            return {"keep": self.keep}

        def __setstate__(self, state: dict[str, int]) -> None:
            self.keep = state["keep"] * 10
            self.cache = None

    r = roundtrip(Stateful())
    assert r.keep == 10 and r.cache is None


# -- fresh interpreters -----------------------------------------------------------

MAIN_SCRIPT = textwrap.dedent(
    """
    import dataclasses, multiprocessing, sys
    from suitkaise.cucumber import serialize, deserialize

    @dataclasses.dataclass
    class DC:
        x: int
        def double(self):
            return self.x * 2

    class Child(DC):
        pass

    def fact(n):
        return 1 if n <= 1 else n * fact(n - 1)

    def check(payload, queue):
        obj = deserialize(payload)
        main = sys.modules["__main__"]
        queue.put((type(obj["dc"]) is main.DC, isinstance(obj["dc"], main.DC), obj["dc"] == main.DC(1)))

    if __name__ == "__main__":
        payload = serialize({"dc": DC(1), "kids": [Child(2), Child(3)], "fact": fact})
        if sys.argv[1] == "dump":
            sys.stdout.buffer.write(payload)
        else:
            ctx = multiprocessing.get_context("spawn")
            queue = ctx.Queue()
            p = ctx.Process(target=check, args=(payload, queue))
            p.start()
            print(queue.get(timeout=60))
            p.join(60)
    """
)


def _loads_in_a_fresh_interpreter(tmp_path: Path, script_text: str, checks: str) -> None:
    """Run ``script_text`` as a real ``__main__`` script that writes its payload ("dump"),
    then load that payload in a fresh interpreter that runs ``checks`` on it."""
    script = tmp_path / "prog.py"
    script.write_text(script_text)
    payload = run_script(script, "dump").stdout
    out = run_fresh(
        "import sys\n"
        "from suitkaise.cucumber import deserialize\n" + checks + "print('ok')\n",
        stdin=payload,
    )
    assert out.stdout.strip() == b"ok"


def test_main_classes_rebuilt_in_a_fresh_interpreter(tmp_path: Path) -> None:
    _loads_in_a_fresh_interpreter(
        tmp_path, MAIN_SCRIPT,
        "obj = deserialize(sys.stdin.buffer.read())\n"
        "dc, kids = obj['dc'], obj['kids']\n"
        "assert repr(dc) == 'DC(x=1)', repr(dc)\n"  # dataclass dunders survive
        "assert dc == type(dc)(1) and dc.double() == 2\n"
        "assert type(kids[0]) is type(kids[1])\n"  # one class per payload
        "assert isinstance(kids[0], type(dc))\n"
        "assert obj['fact'](5) == 120\n",  # recursive __main__ function
    )


def test_main_class_resolves_to_the_spawn_childs_own_class(tmp_path: Path) -> None:
    script = tmp_path / "prog.py"
    script.write_text(MAIN_SCRIPT)
    assert run_script(script, "spawn", timeout=120).stdout.strip() == b"(True, True, True)"


# __main__ classes that name each other in their methods, a base that names its
# subclass, a class that names itself. Each used to be serialized by a nested call
# that never saw the others, so the first two recursed until RecursionError.
LINKED_SCRIPT = textwrap.dedent(
    """
    import multiprocessing, sys
    from suitkaise.cucumber import serialize, deserialize

    class Node:
        def leaf(self):
            return Leaf()

    class Leaf:
        def up(self):
            return Node()

    class A:
        def make(self):
            return B()

    class B(A):
        pass

    class Chain:
        def next(self):
            return Chain()

    def check(payload, queue):
        node, leaf_cls, b, a_cls, chain = deserialize(payload)
        main = sys.modules["__main__"]
        queue.put((type(node) is main.Node, leaf_cls is main.Leaf, type(b) is main.B, a_cls is main.A,
                   type(chain) is main.Chain))

    if __name__ == "__main__":
        payload = serialize([Node(), Leaf, B(), A, Chain()])
        if sys.argv[1] == "dump":
            sys.stdout.buffer.write(payload)
        elif sys.argv[1] == "deep":  # nested past the C pickler's reach: the deep path
            deep = [B(), Node()]
            for _ in range(5000):
                deep = [deep]
            deep = deserialize(serialize(deep))
            for _ in range(5000):
                deep = deep[0]
            print((type(deep[0]) is B, type(deep[1]) is Node, type(deep[1].leaf()) is Leaf))
        elif sys.argv[1] == "same":  # the sender's own classes come back
            node, leaf_cls, b, a_cls, chain = deserialize(payload)
            print((type(node) is Node, leaf_cls is Leaf, type(b) is B, a_cls is A, type(chain) is Chain))
        else:
            ctx = multiprocessing.get_context(sys.argv[1])
            queue = ctx.Queue()
            p = ctx.Process(target=check, args=(payload, queue))
            p.start()
            print(queue.get(timeout=60))
            p.join(60)
    """
)


def test_main_classes_naming_each_other_rebuilt_in_a_fresh_interpreter(tmp_path: Path) -> None:
    _loads_in_a_fresh_interpreter(
        tmp_path, LINKED_SCRIPT,
        "node, Leaf, b, A, chain = deserialize(sys.stdin.buffer.read())\n"
        "Node, B = type(node), type(b)\n"
        "assert type(node.leaf()) is Leaf and type(Leaf().up()) is Node\n"  # one class each per payload
        "assert B.__bases__ == (A,) and type(A().make()) is B and type(B().make()) is B\n"
        "assert type(chain.next()) is type(chain)\n"
        "assert {c.__module__ for c in (Node, Leaf, A, B)} == {'__main__'}\n",
    )


def test_main_classes_naming_each_other_mix_own_and_rebuilt(tmp_path: Path) -> None:
    # The receiver defines Leaf as the sender does (its own class is used) and Node
    # differently (the sender's Node is rebuilt, and still finds the receiver's Leaf).
    _loads_in_a_fresh_interpreter(
        tmp_path, LINKED_SCRIPT,
        "class Node:\n"
        "    def other(self):\n"
        "        return 1\n"
        "class Leaf:\n"
        "    def up(self):\n"
        "        return Node()\n"
        "node, leaf_cls, b, A, chain = deserialize(sys.stdin.buffer.read())\n"
        "assert leaf_cls is Leaf and type(node) is not Node\n"
        "assert type(node.leaf()) is Leaf and not hasattr(node, 'other')\n",
    )


@pytest.mark.parametrize("mode", ["same", "spawn", "forkserver", "fork"])
def test_main_classes_naming_each_other_resolve_to_the_receivers_own(tmp_path: Path, mode: str) -> None:
    script = tmp_path / "linked.py"
    script.write_text(LINKED_SCRIPT)
    assert run_script(script, mode, timeout=120).stdout.strip() == b"(True, True, True, True, True)"


def test_main_classes_naming_each_other_in_deep_data(tmp_path: Path) -> None:
    script = tmp_path / "linked.py"
    script.write_text(LINKED_SCRIPT)
    assert run_script(script, "deep", timeout=120).stdout.strip() == b"(True, True, True)"


def test_a_fresh_interpreter_sends_objects_back() -> None:
    out = run_fresh(
        "import sys, threading\n"
        "from suitkaise.cucumber import serialize\n"
        "class Local:\n"
        "    def __init__(self): self.lock = threading.RLock(); self.me = self\n"
        "def f(x): return x + 1\n"
        "try:\n"
        "    raise ValueError('from the child')\n"
        "except ValueError as e:\n"
        "    err = e\n"
        "sys.stdout.buffer.write(serialize({'obj': Local(), 'f': f, 'g': lambda: 5, 'err': err}))\n"
    )
    back = deserialize(out.stdout)
    assert back["obj"].me is back["obj"] and back["obj"].lock.acquire(timeout=1)
    assert back["f"](1) == 2 and back["g"]() == 5
    assert str(back["err"]) == "from the child" and "ValueError" in back["err"].__remote_traceback__


# -- errors ------------------------------------------------------------------------

class RaisesInReduce:
    def __reduce__(self) -> Any:
        raise RuntimeError("this object refuses to travel")


def Refuses() -> Any:
    """An object nothing can carry, refused by pickle itself (no user code involved)."""
    import ctypes

    return ctypes.pointer(ctypes.c_int(1))


class Job:
    def __init__(self, lock: Any = None) -> None:
        self.lock = lock


def test_serialization_error_names_the_path() -> None:
    class Holder:
        pass

    root = Holder()
    root.jobs = [Job(), Job(), Job(), Job(Refuses())]  # type: ignore[attr-defined]
    with pytest.raises(SerializationError) as info:
        serialize(root)
    err = info.value
    assert err.path == "root.jobs[3].lock"
    text = str(err)
    for line in ("SERIALIZATION FAILED", "Path: root.jobs[3].lock", "Object: ", "Error: ValueError: ctypes objects"):
        assert line in text
    assert isinstance(err.__cause__, ValueError)


def test_exception_from_the_users_reduce_propagates_with_the_path() -> None:
    root = {"jobs": [Job(), Job(RaisesInReduce())]}
    with pytest.raises(RuntimeError, match="refuses to travel") as info:
        serialize(root)
    assert info.value.__notes__ == [
        "cucumber: raised while serializing root['jobs'][1].lock (test_cucumber_core.RaisesInReduce)"
    ]


def test_serialization_error_path_through_dict_keys_and_items() -> None:
    with pytest.raises(SerializationError) as info:
        serialize({"jobs": [1, 2, {"bad": Refuses()}]})
    assert info.value.path == "root['jobs'][2]['bad']"


def test_object_without_a_handler_gets_a_hint() -> None:
    import select

    poller = select.epoll()
    try:
        with pytest.raises(SerializationError) as info:
            serialize({"watch": Job(poller)})
    finally:
        poller.close()
    assert info.value.path == "root['watch'].lock"
    assert "select.epoll" in info.value.type_name
    assert "cannot pickle" in info.value.reason
    assert "__serialize__" in info.value.hint


def test_debug_adds_object_ids() -> None:
    with pytest.raises(SerializationError) as info:
        serialize([Refuses()], debug=True)
    assert "@0x" in info.value.type_name


def test_error_objects_survive_a_round_trip() -> None:
    with pytest.raises(SerializationError) as info:
        serialize([Refuses()])
    r = pickle.loads(pickle.dumps(info.value))
    assert r.path == "root[0]" and str(r) == str(info.value)


@pytest.mark.parametrize("bad", ["text", 42, None, [1, 2], object()])
def test_deserialize_wrong_type(bad: Any) -> None:
    with pytest.raises(DeserializationError, match="a bytes-like object is required"):
        deserialize(bad)


def test_deserialize_truncated_payload() -> None:
    data = serialize({"a": list(range(100))})
    for cut in (1, len(data) // 2, len(data) - 1):
        with pytest.raises(DeserializationError, match="Failed to deserialize"):
            deserialize(data[:cut])


@settings(max_examples=300, deadline=None, database=None)
@given(st.binary(max_size=200))
def test_deserialize_garbage_raises_a_clear_error(garbage: bytes) -> None:
    # Random bytes can never crash the interpreter; they either decode to a
    # plain value (b"N." is None) or raise DeserializationError.
    try:
        deserialize(garbage)
    except DeserializationError:
        pass


# -- property-based round trips ----------------------------------------------------

class Box:
    def __init__(self, content: Any) -> None:
        self.content = content

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Box) and other.content == self.content

    __hash__ = None  # type: ignore[assignment]


hashable = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.binary(max_size=8)
    | st.floats(allow_nan=False),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
values = st.recursive(
    hashable | st.complex_numbers(allow_nan=False) | st.decimals(allow_nan=False) | st.dates(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(hashable, inner, max_size=4)
        | st.sets(hashable, max_size=4)
        | st.tuples(inner, inner)
        | st.builds(Box, inner)
    ),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_generated_object_graphs_round_trip(value: Any) -> None:
    assert roundtrip(value) == value


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(st.lists(st.integers(), max_size=3), min_size=1, max_size=5), st.data())
def test_generated_sharing_is_preserved(pool: list[list[int]], data: st.DataObject) -> None:
    picks = data.draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=10))
    graph = [pool[i] for i in picks]
    r = roundtrip(graph)
    for a in range(len(picks)):
        for b in range(len(picks)):
            assert (r[a] is r[b]) == (graph[a] is graph[b])


# -- buffers, threads, verbose ------------------------------------------------------

def test_out_of_band_buffers() -> None:
    np = pytest.importorskip("numpy")
    arr = np.arange(1_000_000, dtype=np.float64)
    buffers: list[pickle.PickleBuffer] = []
    data = serialize({"a": arr, "b": pickle.PickleBuffer(bytearray(b"xyz"))}, buffer_callback=buffers.append)
    assert len(data) < 10_000 and len(buffers) == 2
    r = deserialize(data, buffers=[bytes(b.raw()) for b in buffers])
    assert np.array_equal(r["a"], arr)


def test_concurrent_calls_from_many_threads() -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(200):
                obj = {"n": n, "i": i, "f": lambda: n, "lock": threading.Lock()}
                r = roundtrip(obj)
                assert r["n"] == n and r["i"] == i and r["f"]() == n
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def test_verbose_traces_handlers(capsys: pytest.CaptureFixture[str]) -> None:
    serialize({"lock": threading.Lock()}, verbose=True)
    out = capsys.readouterr().out
    assert "[CUCUMBER] Starting serialization of dict" in out
    assert "handler" in out and "Serialization complete, bytes:" in out
    assert "\x1b[" not in out  # no colour codes when stdout is not a terminal


def test_plain_pickle_payloads_are_accepted() -> None:
    assert deserialize(pickle.dumps({"plain": 1})) == {"plain": 1}


# -- the inspection view ------------------------------------------------------------

def test_ir_shape_and_references() -> None:
    shared = [1, 2]
    ir = cucumber.serialize_ir({"a": shared, "b": shared, "t": (1, 2)})
    assert ir["__cucumber_type__"] == "dict"
    items = dict(ir["items"])
    assert items["a"]["__cucumber_type__"] == "list" and items["a"]["items"] == [1, 2]
    assert items["b"] == {"__cucumber_ref__": items["a"]["__object_id__"]}
    assert items["t"]["__cucumber_type__"] == "tuple"


def test_ir_names_the_handler_for_live_resources() -> None:
    ir = cucumber.serialize_ir(threading.Lock())
    assert ir["__cucumber_type__"] == "_thread.lock"
    assert ir["__handler__"] not in ("pickle", "cloudpickle")


def test_json_views_are_json_safe() -> None:
    import datetime
    import decimal
    import fractions
    import uuid

    obj = {
        "bytes": b"\x00\x01", "complex": 1 + 2j, "when": datetime.datetime(2026, 1, 2, 3, 4, 5),
        "day": datetime.date(2026, 1, 2), "delta": datetime.timedelta(seconds=90),
        "dec": decimal.Decimal("1.5"), "frac": fractions.Fraction(1, 3), "id": uuid.UUID(int=5),
        "path": Path("/tmp/x"), "range": range(1, 10, 2), "node": Node("n"),
    }
    text = cucumber.to_json(obj)
    parsed = json.loads(text)
    assert parsed == cucumber.to_jsonable(obj)
    kinds = {m["__cucumber_json__"] for m in _markers(parsed)}
    assert {"bytes", "complex", "datetime", "date", "timedelta", "decimal", "fraction", "uuid", "path", "range", "tuple"} <= kinds
    assert cucumber.ir_to_json(cucumber.serialize_ir([1]), indent=None) == json.dumps(
        cucumber.ir_to_jsonable(cucumber.serialize_ir([1])), sort_keys=True
    )


def _markers(tree: Any) -> list[dict[str, Any]]:
    found = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__cucumber_json__" in node:
                found.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def test_deep_structures_have_an_inspection_view() -> None:
    root: list[Any] = []
    cur = root
    for _ in range(10_000):
        nxt: list[Any] = []
        cur.append(nxt)
        cur = nxt
    text = cucumber.to_json(root, indent=None)
    assert text.count("__cucumber_type__") == 10_001


def test_public_api() -> None:
    assert set(cucumber.__all__) >= {
        "serialize", "deserialize", "reconnect_all", "SerializationError", "DeserializationError",
        "serialize_ir", "to_jsonable", "to_json", "ir_to_jsonable", "ir_to_json",
    }


def test_payloads_of_0_5_0_for_main_classes_still_load():
    """0.5.0 wrote a __main__ class as _rebuild_main_class(qualname, digest, nested payload)."""
    from collections import OrderedDict

    from suitkaise.cucumber import _pickler

    class Old:
        def __reduce__(self):
            return (_pickler._rebuild_main_class, ("NoSuchClass", "digest", pickle.dumps(OrderedDict)))

    assert cucumber.deserialize(pickle.dumps(Old())) is OrderedDict
