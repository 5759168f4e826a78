"""Public extension points: ``register_handler``, entry points, the ``Reconnector`` base.

The end-to-end tests build ``tests/ext_pkg`` (a stand-in third-party library,
``skext-demo``, that declares a ``suitkaise.cucumber`` entry point) into a wheel,
install it with the local sk-* packages into a fresh virtual environment, and run
scripts there that only import the library itself: its ``Client`` must travel
through a ``Pool`` and a ``Share`` as its reconnector and come back live through
``reconnect_all`` with auth keyed ``"skext_demo.Client"``, as the built-ins are.

The in-process tests exercise the registry API directly (precedence, subclasses,
lazy string names, errors) and the entry-point scanner on metadata written into
``tmp_path``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sk_testkit import run_fresh
from suitkaise import cucumber
from suitkaise.cucumber import (
    Reconnector,
    SerializationError,
    _plugins,
    _registry,
    deserialize,
    reconnect_all,
    register_handler,
    serialize,
)

HERE = Path(__file__).resolve().parent
PACKAGES = HERE.parent.parent
LOCAL = ["sk-cucumber", "sk-timing", "sk-pipe", "sk-share", "sk-processing"]


# -- the registry, in process ---------------------------------------------------------


@pytest.fixture
def registry() -> Iterator[None]:
    """Undo this test's registrations (the registry is process-wide)."""
    saved = [dict(layer) for layer in _registry._LAYERS]
    saved_by_name = dict(_registry._BY_NAME)
    try:
        yield
    finally:
        for layer, old in zip(_registry._LAYERS, saved, strict=True):
            layer.clear()
            layer.update(old)
        _registry._BY_NAME.clear()
        _registry._BY_NAME.update(saved_by_name)
        _registry._CACHE.clear()


class Meter:
    """Holds a lock and a count; by default cucumber would move both itself."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.lock = threading.Lock()


class SubMeter(Meter):
    pass


class OwnProtocol(Meter):
    def __serialize__(self) -> int:
        return -self.count

    @classmethod
    def __deserialize__(cls, state: int) -> OwnProtocol:
        return cls(state)


def meter_state(m: Meter) -> int:
    return m.count * 10


def meter_rebuild(state: int) -> Meter:
    return Meter(state + 1)


def sub_rebuild(state: int) -> Meter:
    return SubMeter(state + 2)


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=-(10**6), max_value=10**6), st.sampled_from(["class", "name"]))
def test_handler_by_class_or_name_runs_both_sides(count: int, form: str) -> None:
    saved = dict(_registry._LAYERS[_registry.USER])
    try:
        target = Meter if form == "class" else f"{__name__}.Meter"
        register_handler(target, meter_state, meter_rebuild)
        back = deserialize(serialize([Meter(count), Meter(count)]))
        assert [type(m) for m in back] == [Meter, Meter]
        assert [m.count for m in back] == [count * 10 + 1] * 2
    finally:
        _registry._LAYERS[_registry.USER].clear()
        _registry._LAYERS[_registry.USER].update(saved)
        _registry._BY_NAME.pop(f"{__name__}.Meter", None)
        _registry._CACHE.clear()


def test_shared_references_stay_shared(registry: None) -> None:
    register_handler(Meter, meter_state, meter_rebuild)
    m = Meter(2)
    a, b = deserialize(serialize((m, m)))
    assert a is b and a.count == 21


def test_subclass_uses_base_handler_unless_it_has_its_own(registry: None) -> None:
    register_handler(Meter, meter_state, meter_rebuild)
    assert type(deserialize(serialize(SubMeter(1)))) is Meter  # the base handler's rebuild
    register_handler(SubMeter, meter_state, sub_rebuild)
    back = deserialize(serialize(SubMeter(1)))
    assert type(back) is SubMeter and back.count == 12
    own = deserialize(serialize(OwnProtocol(4)))  # its own protocol beats its base's handler
    assert type(own) is OwnProtocol and own.count == -4


def test_program_beats_entry_point_beats_builtin(registry: None) -> None:
    import sqlite3

    conn = sqlite3.connect(":memory:")
    try:
        builtin = deserialize(serialize(conn))
        assert type(builtin).__name__ == "SQLiteConnectionReconnector"
        with _registry.plugin_layer():
            register_handler("sqlite3.Connection", lambda c: "from a plugin")
        assert deserialize(serialize(conn)) == "from a plugin"
        register_handler(sqlite3.Connection, lambda c: "from the program")
        assert deserialize(serialize(conn)) == "from the program"
        with _registry.plugin_layer():  # a plugin loaded later does not override the program
            register_handler("sqlite3.Connection", lambda c: "late plugin")
        assert deserialize(serialize(conn)) == "from the program"
    finally:
        conn.close()


def test_name_registration_imports_nothing(registry: None) -> None:
    register_handler("not_a_real_module_xyz.Thing", meter_state)
    assert "not_a_real_module_xyz" not in sys.modules
    assert _registry.describe()["not_a_real_module_xyz.Thing"] == "meter_state"


@pytest.mark.parametrize(
    "target", ["Meter", "", ".Meter", "a b.C", 42, None, Meter(1)],
)
def test_bad_target_is_refused_clearly(target: Any, registry: None) -> None:
    with pytest.raises(TypeError, match="class or its qualified name"):
        register_handler(target, meter_state)


def test_bad_callables_are_refused_clearly(registry: None) -> None:
    with pytest.raises(TypeError, match="to_state must be callable"):
        register_handler(Meter, "nope")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="from_state must be callable"):
        register_handler(Meter, meter_state, 3)  # type: ignore[arg-type]


def test_handler_that_returns_its_own_type_without_from_state_is_named(registry: None) -> None:
    register_handler(Meter, lambda m: Meter(m.count))
    with pytest.raises(SerializationError) as info:
        serialize({"jobs": [Meter(1)]})
    assert "returned another" in str(info.value) and "Meter" in str(info.value)


def test_failing_to_state_names_the_path(registry: None) -> None:
    def broken(m: Meter) -> Any:
        raise RuntimeError("session expired")

    register_handler(Meter, broken)
    # the handler is the user's own code: its exception propagates as itself (pickle's
    # contract, see test_cucumber_errors.py), with the path added as a note
    with pytest.raises(RuntimeError, match="session expired") as info:
        serialize({"jobs": [Meter(1)]})
    assert not isinstance(info.value, SerializationError)
    note = " ".join(info.value.__notes__)
    assert "root['jobs'][0]" in note and "Meter" in note


class Vault:
    """A client type of "a library": its token must never travel."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token


class VaultReconnector(Reconnector):
    auth_key = "tests.Vault"

    def __init__(self, url: str) -> None:
        self.url = url

    def reconnect(self, token: str) -> Vault:
        return Vault(self.url, token)


def vault_state(v: Vault) -> VaultReconnector:
    return VaultReconnector(v.url)


class Holder:
    def __init__(self, main: Any, audit: Any) -> None:
        self.main = main
        self.audit = audit


def test_reconnector_subclass_takes_auth_keyed_like_builtins(registry: None) -> None:
    register_handler(Vault, vault_state)
    data = serialize(Holder(Vault("db://a", "SECRET-1"), Vault("db://b", "SECRET-2")))
    assert b"SECRET" not in data
    h = deserialize(data)
    assert isinstance(h.main, VaultReconnector) and isinstance(h.audit, VaultReconnector)
    with pytest.raises(AttributeError, match="not connected"):
        h.main.url_of_live_client  # noqa: B018 - not lazy: no reconnect on access
    reconnect_all(h, **{"tests.Vault": {"*": "T-main", "audit": "T-audit"}})
    assert (type(h.main), h.main.url, h.main.token) == (Vault, "db://a", "T-main")
    assert (type(h.audit), h.audit.url, h.audit.token) == (Vault, "db://b", "T-audit")


def test_public_names() -> None:
    assert {"register_handler", "Reconnector"} <= set(cucumber.__all__)
    assert cucumber.Reconnector is cucumber.reconnectors.Reconnector


# -- entry-point scanning, in process ---------------------------------------------------


def _fake_site(tmp_path: Path, dists: dict[str, str], modules: dict[str, str]) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    for dist, entry_points in dists.items():
        info = site / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for name, source in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))
    return site


def test_scan_reads_only_our_group_and_first_distribution_wins(tmp_path: Path) -> None:
    site = _fake_site(tmp_path, {
        "alpha": """
            [console_scripts]
            alpha = alpha:main
            [suitkaise.cucumber]
            alpha = alpha_handlers
            "alpha.net.Client" = alpha_handlers:register [extra]
            ; a comment
        """,
        "beta_pkg": "[suitkaise.cucumber]\nbeta=beta_handlers\n",
    }, {})
    later = tmp_path / "later"
    later.mkdir()
    (later / "alpha-2.0.dist-info").mkdir()
    (later / "alpha-2.0.dist-info" / "entry_points.txt").write_text("[suitkaise.cucumber]\nalpha = shadowed\n")
    found = _plugins.scan([str(site), str(later), str(tmp_path / "missing")])
    assert sorted((e.name, e.value, e.distribution) for e in found) == [
        ("alpha", "alpha_handlers", "alpha"),
        ("alpha.net.Client", "alpha_handlers:register", "alpha"),
        ("beta", "beta_handlers", "beta-pkg"),
    ]


@pytest.fixture
def fake_plugins(tmp_path: Path, registry: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = _fake_site(tmp_path, {
        "lib_a": "[suitkaise.cucumber]\nlib_a_types = lib_a_handlers:register\n",
        "lib_broken": "[suitkaise.cucumber]\nlib_b_types = lib_b_handlers\n",
    }, {
        "lib_a_types": """
            class Token:
                def __init__(self, v):
                    self.v = v
                def __reduce_ex__(self, protocol):
                    raise TypeError("cannot pickle Token")
            class Other:
                pass
        """,
        "lib_a_handlers": """
            from suitkaise.cucumber import register_handler
            CALLS = []
            def rebuild(v):
                from lib_a_types import Token
                return Token(v * 2)
            def register():
                import time
                CALLS.append(1)
                time.sleep(0.05)  # widen the window for the concurrent first-miss test
                register_handler("lib_a_types.Token", lambda t: t.v, rebuild)
        """,
        "lib_b_types": "class Thing:\n    pass\n",
        "lib_b_handlers": "raise ImportError('lib_b needs a driver that is not installed')\n",
    })
    monkeypatch.syspath_prepend(str(site))
    _plugins.reset()
    try:
        yield site
    finally:
        for name in ("lib_a_types", "lib_a_handlers", "lib_b_types", "lib_b_handlers"):
            sys.modules.pop(name, None)
        _plugins.reset()


def test_entry_point_loads_on_first_miss_of_a_covered_type_only(fake_plugins: Path) -> None:
    import lib_a_types  # type: ignore[import-not-found]

    serialize([1, "x", {"a": (2.0, None)}])  # builtins never miss: nothing read yet
    assert _plugins._pending is None
    serialize(Meter(1))  # a miss for a type no entry point covers: metadata read, nothing loaded
    assert "lib_a_handlers" not in sys.modules and "lib_b_handlers" not in sys.modules
    back = deserialize(serialize(lib_a_types.Token(21)))
    assert type(back) is lib_a_types.Token and back.v == 42
    assert sys.modules["lib_a_handlers"].CALLS == [1]
    serialize([lib_a_types.Token(1), lib_a_types.Other()])  # loaded once only
    assert sys.modules["lib_a_handlers"].CALLS == [1]
    assert "lib_b_handlers" not in sys.modules


def test_concurrent_first_misses_all_get_the_plugin_handler(fake_plugins: Path) -> None:
    import lib_a_types

    n = 8
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = deserialize(serialize(lib_a_types.Token(i))).v
        except Exception as e:
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [2 * i for i in range(n)]
    assert sys.modules["lib_a_handlers"].CALLS == [1]
    assert [t.v for t in deserialize(serialize([lib_a_types.Token(5)]))] == [10]  # nothing stale cached


def test_broken_entry_point_warns_once_and_serialization_goes_on(fake_plugins: Path) -> None:
    import lib_b_types  # type: ignore[import-not-found]

    with pytest.warns(RuntimeWarning, match=r"lib_b_types.*lib-broken.*driver that is not installed"):
        back = deserialize(serialize(lib_b_types.Thing()))
    assert type(back) is lib_b_types.Thing
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        serialize(lib_b_types.Thing())


def test_no_entry_points_installed_costs_nothing_after_the_first_miss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = type("Fresh", (), {})()  # a type no lookup has cached yet
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    _plugins.reset()
    try:
        serialize(fresh)
        assert _registry.on_miss is None
    finally:
        monkeypatch.undo()
        _plugins.reset()


def test_import_reads_no_metadata_and_imports_no_importlib_metadata() -> None:
    out = run_fresh(
        "import sys\n"
        "import suitkaise.cucumber as c\n"
        "from suitkaise.cucumber import _plugins\n"
        "print(_plugins._pending is None, 'importlib.metadata' in sys.modules)\n"
    )
    assert out.stdout.decode().split() == ["True", "False"]


# -- end to end: a wheel with an entry point, installed into a fresh venv ------------------


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is needed to build the fixture wheel and the fresh venv")
    root = tmp_path_factory.mktemp("ext-venv")
    env = {**os.environ, "VIRTUAL_ENV": ""}

    def run(*args: str) -> None:
        proc = subprocess.run([uv, *args], capture_output=True, text=True, timeout=240, env=env)
        assert proc.returncode == 0, f"uv {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"

    run("build", "--wheel", "--out-dir", str(root / "dist"), str(HERE / "ext_pkg"))
    run("venv", "--python", sys.executable, str(root / "venv"))
    python = root / "venv" / "bin" / "python"
    wheels = [str(w) for w in (root / "dist").glob("skext_demo-*.whl")]
    run("pip", "install", "--python", str(python), *(str(PACKAGES / p) for p in LOCAL), *wheels)
    return python


def _run_in(python: Path, script: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [str(python), str(script), *args], capture_output=True, text=True, timeout=120,
        cwd=str(script.parent), env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


_POOL_SCRIPT = '''
import json
import multiprocessing
import sys

import skext_demo
from suitkaise.cucumber import reconnect_all, serialize
from suitkaise.processing import Pool


class Holder:
    def __init__(self, main, audit):
        self.main, self.audit = main, audit


def work(holder):
    sent = [type(holder.main).__name__, type(holder.audit).__name__]
    reconnect_all(holder, **{"skext_demo.Client": {"*": "worker-main", "audit": "worker-audit"}})
    holder.main.write("pool-main")
    holder.audit.write("pool-audit")
    return sent, type(holder.main).__name__, holder.main  # the worker sends a live Client back


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[2])
    log = sys.argv[1]
    main = skext_demo.Client(log, "parent-secret")
    holder = Holder(main, skext_demo.Client(log, "parent-secret"))
    handlers_before = "skext_demo._cucumber" in sys.modules
    with Pool(1) as pool:
        [(sent, live, back)] = pool.map(work, [holder])
    payload_has_secret = b"parent-secret" in serialize(holder)
    back_type = type(back).__name__
    back = reconnect_all(back, **{"skext_demo.Client": {"*": "parent-again"}})
    back.write("pool-back")
    print(json.dumps({
        "handlers_before": handlers_before,
        "handlers_after": "skext_demo._cucumber" in sys.modules,
        "sent": sent, "live": live, "back_type": back_type,
        "back_live": type(back).__name__, "secret_in_payload": payload_has_secret,
    }))
'''

_SHARE_SCRIPT = '''
import copy
import json
import multiprocessing
import sys

import skext_demo
from suitkaise.cucumber import reconnect_all
from suitkaise.processing import Pool
from suitkaise.share import Share


def work(share):
    rec = copy.copy(share.client)  # a Share hands out proxies; a copy is the real value
    live = reconnect_all(rec, **{"skext_demo.Client": {"*": "share-worker"}})
    live.write("share-from-worker")
    share.from_worker = live  # a live Client stored by the worker: its entry point loads there
    return type(rec).__name__, type(live).__name__


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[2])
    handlers_before = "skext_demo._cucumber" in sys.modules
    with Share() as share:
        share.client = skext_demo.Client(sys.argv[1], "parent-secret")
        with Pool(1) as pool:
            [(seen, live)] = pool.map(work, [share])
        stored = copy.copy(share.from_worker)
        stored_type = type(stored).__name__
        back = reconnect_all(stored, **{"skext_demo.Client": {"*": "share-parent"}})
        back.write("share-back")
    print(json.dumps({
        "handlers_before": handlers_before, "seen": seen, "live": live,
        "stored_type": stored_type, "back_live": type(back).__name__,
    }))
'''


@pytest.mark.timeout(300)
def test_installed_library_type_travels_through_a_pool(
    fresh_venv: Path, tmp_path: Path, start_method: str
) -> None:
    script = tmp_path / "pool_user.py"
    script.write_text(_POOL_SCRIPT)
    log = tmp_path / "log.txt"
    out = _run_in(fresh_venv, script, str(log), start_method)
    assert out == {
        "handlers_before": False, "handlers_after": True,
        "sent": ["ClientReconnector", "ClientReconnector"], "live": "Client",
        "back_type": "ClientReconnector", "back_live": "Client", "secret_in_payload": False,
    }
    assert log.read_text().splitlines() == [
        "worker-main:pool-main", "worker-audit:pool-audit", "parent-again:pool-back",
    ]


@pytest.mark.timeout(300)
def test_installed_library_type_travels_through_a_share(
    fresh_venv: Path, tmp_path: Path, start_method: str
) -> None:
    script = tmp_path / "share_user.py"
    script.write_text(_SHARE_SCRIPT)
    log = tmp_path / "log.txt"
    out = _run_in(fresh_venv, script, str(log), start_method)
    assert out == {
        "handlers_before": False, "seen": "ClientReconnector", "live": "Client",
        "stored_type": "ClientReconnector", "back_live": "Client",
    }
    assert log.read_text().splitlines() == ["share-worker:share-from-worker", "share-parent:share-back"]


@pytest.mark.timeout(300)
def test_installed_library_type_is_refused_without_its_entry_point(fresh_venv: Path, tmp_path: Path) -> None:
    """The control: with the plugin's metadata hidden, the same Client cannot travel."""
    script = tmp_path / "no_plugin.py"
    script.write_text(textwrap.dedent('''
        import json, sys
        from suitkaise.cucumber import SerializationError, serialize
        from suitkaise.cucumber import _plugins
        import skext_demo
        _plugins._pending = [e for e in _plugins.scan() if e.distribution != "skext-demo"]
        try:
            serialize(skext_demo.Client(sys.argv[1], "s"))
        except (SerializationError, TypeError) as e:  # the library's own __reduce_ex__ refuses
            print(json.dumps({"refused": "live session" in str(e)}))
        else:
            print(json.dumps({"refused": False}))
    '''))
    assert _run_in(fresh_venv, script, str(tmp_path / "log.txt")) == {"refused": True}
