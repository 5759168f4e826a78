"""Every code example of processing-how-to-use.md, run as written.

Only the page's placeholders are filled (see howto_support.py). Each test
names the page section it covers and asserts the result the page states.
Process tests run under each start method of the ``start_method`` fixture.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import time
import warnings

import howto_support as hs
import pytest
from howto_support import (
    AllTimeouts,
    BatchProcess,
    CommandProcess,
    FailIn,
    FailingWithHandler,
    FailingWithoutHandler,
    FailThenBadHandler,
    Forever,
    HundredRuns,
    IncrementProcess,
    JoinInProcess,
    MyProcess,
    OneWayReader,
    PipeProcess,
    ProcessItem,
    RecordingProcess,
    ShortJoinIn,
    Silent,
    SlowRun,
    ThreeLives,
    TimedProcess,
    fn,
    heavy_computation,
    process_item,
    slow_fn,
)

from suitkaise.processing import (
    ErrorHandlerError,
    OnFinishError,
    Pipe,
    Pool,
    PostRunError,
    PreRunError,
    ProcessError,
    ProcessTimeoutError,
    ProcessTimers,
    ResultError,
    ResultTimeoutError,
    RunError,
    Share,
    Skprocess,
    autoreconnect,
)
from suitkaise.timing import Sktimer

# -- Importing -----------------------------------------------------------------------


def test_importing():
    from suitkaise import processing
    from suitkaise.processing import (  # noqa: F401  (the page's import block, verbatim)
        ErrorHandlerError,
        OnFinishError,
        Pipe,
        Pool,
        PostRunError,
        PreRunError,
        ProcessError,
        ProcessTimeoutError,
        ProcessTimers,
        ResultError,
        ResultTimeoutError,
        RunError,
        Share,
        Skprocess,
        autoreconnect,
    )

    assert processing.Skprocess is Skprocess
    # "All exceptions inherit from ProcessError."
    for err in (PreRunError, RunError, PostRunError, OnFinishError, ResultError,
                ErrorHandlerError, ProcessTimeoutError, ResultTimeoutError):
        assert issubclass(err, ProcessError), err
    # Decision 2: ResultTimeoutError is also the builtin TimeoutError.
    assert issubclass(ResultTimeoutError, TimeoutError)


# -- Skprocess: the first example and the lifecycle snippets ----------------------------


def test_myprocess_result_is_10(start_method):
    process = MyProcess()
    process.start()
    process.wait()
    result = process.result()  # 10
    assert result == 10
    assert process.current_run == 10  # decision 6: the child's final state
    assert process.is_alive is False


def test_prerun_and_run_snippets(start_method):
    # __prerun__: self.data = fetch_next_batch(); __run__: for item in self.data: process(item)
    assert BatchProcess().run() == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert hs.PROCESSED == []  # process() ran in the child, not here


def test_postrun_onfinish_result_snippets(start_method):
    process = RecordingProcess()
    process.start()
    process.wait()
    # __onfinish__ called cleanup_resources() then save_final_state()
    # (messages can be drained after wait() until result() is collected)
    assert process.listen(timeout=10) == "cleaned up"
    assert process.listen(timeout=10) == {"saved": [10, 20, 30, 40], "batch_result": None}
    assert process.result() == {'count': 4, 'results': [10, 20, 30, 40], 'status': 'completed'}


def test_error_snippet_returns_handler_value(start_method, capfd):
    process = FailingWithHandler()
    out = process.run()
    assert out == {'status': 'failed', 'error': "Error in __run__ on run 1: ValueError: bad batch 1"}
    assert isinstance(process.error, RunError)  # decision 6: the child's error
    assert str(process.error.original_error) == "bad batch 1"
    if start_method != "forkserver":
        # a forkserver child writes to the fd 2 the fork server inherited when it was
        # started (an earlier test's capture), not to this test's
        assert "LOGGED-ERROR" in capfd.readouterr().err


def test_default_error_is_raised_by_result(start_method):
    process = FailingWithoutHandler()
    process.start()
    with pytest.raises(RunError) as info:
        process.result()
    assert info.value.current_run == 1
    assert isinstance(info.value.original_error, ValueError)
    assert str(info.value.original_error) == "bad batch 1"


# -- process_config ------------------------------------------------------------------


def test_process_config_runs_join_in_lives(start_method):
    assert HundredRuns().run() == 100
    assert JoinInProcess().run() == 3  # join_in=60.0 accepted; stop() from inside ends it
    n = ShortJoinIn().run.timeout(60)()  # runs=None, join_in=0.5: stops by itself
    assert n >= 1
    # lives=3: two crashes are retried, the same iteration repeats with state kept
    assert ThreeLives(failures=2).run() == [0, 0, 0, 1]
    with pytest.raises(RunError) as info:
        ThreeLives(failures=3).run()
    assert info.value.current_run == 0
    assert str(info.value.original_error) == "crash 3"


def test_process_config_timeouts(start_method):
    assert AllTimeouts().run() == ["prerun", "run", "postrun"] * 2 + ["onfinish"]
    process = SlowRun()
    process.start()
    with pytest.raises(ProcessTimeoutError) as info:
        process.result()
    e = info.value
    assert (e.section, e.timeout, e.current_run) == ("__run__", 0.3, 0)
    assert f"Timeout in {e.section} after {e.timeout}s on run {e.current_run}" in str(e)


# -- control methods -------------------------------------------------------------------


def test_start_stop_wait(start_method):
    process = Forever()
    process.start()
    assert process.listen(timeout=30) == "running"
    assert process.is_alive is True
    finished = process.wait(timeout=0.2)  # returns False if timeout
    assert finished is False
    process.stop()
    finished = process.wait()  # blocks until done
    assert finished is True
    result = process.result()
    assert result["finished"] is True and result["n"] >= 1


def test_crash_with_lives_left_is_restarted(start_method, tmp_path):
    # "If the process crashes and has lives remaining, wait() continues blocking
    # during the restart."
    process = hs.CrashOnce(str(tmp_path / "crashed"))
    process.start()
    assert process.wait() is True
    assert process.result() == "survived"


def test_hard_crash_without_lives_raises(start_method, tmp_path):
    process = hs.CrashOnce(str(tmp_path / "crashed"), lives=1)
    process.start()
    with pytest.raises(ProcessError, match="3"):
        process.result()


def test_kill_gives_no_result(start_method):
    process = Forever()
    process.start()
    assert process.listen(timeout=30) == "running"
    process.kill()
    assert process.wait(timeout=30) is True
    assert process.is_alive is False
    assert process.result() is None


def test_wait_asynced(start_method):
    process = MyProcess()
    process.start()

    async def main():
        return await process.wait.asynced()()

    assert asyncio.run(main()) is True
    assert process.result() == 10


def test_result_modifiers(start_method):
    process = MyProcess()
    process.start()
    data = process.result.timeout(10.0)()
    assert data == 10

    process = MyProcess()
    process.start()
    future = process.result.background()()
    assert isinstance(future, concurrent.futures.Future)
    data = future.result()
    assert data == 10

    process = MyProcess()
    process.start()

    async def main():
        return await process.result.asynced()()

    data = asyncio.run(main())
    assert data == 10


def test_run_and_its_modifiers(start_method):
    process = MyProcess()
    result = process.run()
    assert result == 10

    result = MyProcess().run.timeout(30.0)()
    assert result == 10

    future = MyProcess().run.background()()
    # ... do other work ...
    result = future.result()
    assert result == 10

    async def main():
        return await MyProcess().run.asynced()()

    assert asyncio.run(main()) == 10


# -- tell() / listen() -----------------------------------------------------------------


def test_tell_and_listen(start_method):
    process = CommandProcess()
    process.start()
    # from parent
    process.tell({"command": "update_config", "value": 100})
    process.tell({"command": "update_config", "value": 7})
    # run 2's __prerun__ hears nothing for 1 s: listen(timeout=1.0) gives None, size is kept
    data = process.listen()  # blocks until data received
    assert data == {"status": "batch_complete", "count": 100}
    future = process.listen.background()(timeout=5.0)
    assert future.result() == {"status": "batch_complete", "count": 7}

    async def main():
        return await process.listen.asynced()()

    assert asyncio.run(main()) == {"status": "batch_complete", "count": 7}
    process.wait()
    assert process.listen(timeout=0.5) is None  # finished, every message read


def test_listen_timeout_returns_none(start_method):
    process = Silent()
    process.start()
    try:
        assert process.listen(timeout=0.3) is None  # returns None if timeout
    finally:
        process.stop()
        assert process.wait(timeout=30)


# -- timing, properties, ProcessTimers ---------------------------------------------------


def test_timing_and_process_timers(start_method):
    process = TimedProcess()
    assert process.timers is None
    process.start()
    process.wait()

    # access timing data
    assert process.__run__.timer.num_times == 5
    assert process.__run__.timer.mean >= 0.002
    assert process.__prerun__.timer.total_time >= 0.005
    assert process.__postrun__.timer.percentile(95) >= 0.001
    # aggregate timer for full iterations (prerun + run + postrun)
    assert process.process_timer.num_times == 5
    assert process.process_timer.mean >= process.__run__.timer.mean

    timers = process.timers
    assert isinstance(timers, ProcessTimers)
    assert isinstance(timers.run, Sktimer)
    assert timers.run.mean == process.__run__.timer.mean
    assert timers.prerun.total_time == process.__prerun__.timer.total_time
    assert timers.full_run.percentile(95) >= timers.run.percentile(95)
    assert timers.error is None  # nothing failed
    assert process.current_run == 5
    assert process.error is None
    assert process.is_alive is False


def test_undefined_prerun_postrun_are_skipped_and_untimed():
    # README: __prerun__/__postrun__ you do not define are not called and have no timer;
    # __onfinish__ and __result__ always run (defaults), so their timers exist.
    process = hs.MyProcess()
    assert process.run() == 10
    assert process.timers.prerun is None and process.timers.postrun is None
    assert process.timers.run.num_times == 10
    assert process.timers.onfinish.num_times == 1
    assert process.timers.result.num_times == 1


# -- Pool ---------------------------------------------------------------------------


ITEMS = list(range(12))
SQUARES = [x * x for x in ITEMS]
ARGS_TUPLES = [(1, 2), (3, 4), (5, 6)]


def test_pool_map_and_modifiers(start_method):
    pool = Pool(workers=4)
    try:
        items = ITEMS
        # basic usage
        results = pool.map(process_item, items)
        assert results == SQUARES

        # star - unpacks tuples as function arguments
        results = pool.star().map(fn, [(1, 2), (3, 4)])
        assert results == [(1, 2), (3, 4)]  # fn(1, 2), fn(3, 4)
        assert pool.map(fn, [(1, 2), (3, 4)]) == [((1, 2),), ((3, 4),)]  # fn((1, 2), ), ...

        results = pool.map.timeout(30.0)(process_item, items)
        assert results == SQUARES
        future = pool.map.background()(process_item, items)
        results = future.result()
        assert results == SQUARES

        async def main():
            results = await pool.map.asynced()(process_item, items)
            assert results == SQUARES
            # combine modifiers
            future = pool.map.timeout(30.0).background()(process_item, items)
            assert future.result() == SQUARES
            results = await pool.map.asynced().timeout(30.0)(process_item, items)
            assert results == SQUARES
            # star composes with all modifiers
            args_tuples = ARGS_TUPLES
            assert pool.star().map.timeout(30.0)(fn, args_tuples) == ARGS_TUPLES
            future = pool.star().map.background()(fn, args_tuples)
            assert future.result() == ARGS_TUPLES
            results = await pool.star().map.asynced()(fn, args_tuples)
            assert results == ARGS_TUPLES

        asyncio.run(main())
    finally:
        pool.close()


def test_pool_unordered_map_imap_unordered_imap(start_method):
    with Pool(workers=4) as pool:
        items, args_tuples = ITEMS, ARGS_TUPLES

        # unordered_map: a list, completion order
        results = pool.unordered_map(process_item, items)
        assert isinstance(results, list) and sorted(results) == SQUARES
        assert sorted(pool.star().unordered_map(fn, [(1, 2), (3, 4)])) == [(1, 2), (3, 4)]
        assert sorted(pool.unordered_map.timeout(30.0)(process_item, items)) == SQUARES
        assert sorted(pool.unordered_map.background()(process_item, items).result()) == SQUARES
        assert sorted(pool.star().unordered_map.timeout(30.0)(fn, args_tuples)) == ARGS_TUPLES
        assert sorted(pool.star().unordered_map.background()(fn, args_tuples).result()) == ARGS_TUPLES

        # imap: iterator, input order
        seen = []
        for result in pool.imap(process_item, items):
            seen.append(result)
        assert seen == SQUARES
        assert list(pool.star().imap(fn, [(1, 2), (3, 4)])) == [(1, 2), (3, 4)]
        assert list(pool.imap.timeout(10.0)(process_item, items)) == SQUARES
        future = pool.imap.background()(process_item, items)
        assert future.result() == SQUARES  # list
        assert list(pool.star().imap.timeout(10.0)(fn, args_tuples)) == ARGS_TUPLES
        assert pool.star().imap.background()(fn, args_tuples).result() == ARGS_TUPLES

        # unordered_imap: iterator, completion order
        assert sorted(pool.unordered_imap(process_item, items)) == SQUARES
        assert sorted(pool.star().unordered_imap(fn, [(1, 2), (3, 4)])) == [(1, 2), (3, 4)]
        assert sorted(pool.unordered_imap.timeout(30.0)(process_item, items)) == SQUARES
        future = pool.unordered_imap.background()(process_item, items)
        results = future.result()
        assert isinstance(results, list) and sorted(results) == SQUARES
        assert sorted(pool.star().unordered_imap.timeout(30.0)(fn, args_tuples)) == ARGS_TUPLES
        assert sorted(pool.star().unordered_imap.background()(fn, args_tuples).result()) == ARGS_TUPLES

        async def main():
            r1 = await pool.unordered_map.asynced()(process_item, items)
            r2 = await pool.star().unordered_map.asynced()(fn, args_tuples)
            r3 = await pool.imap.asynced()(process_item, items)  # list
            r4 = await pool.star().imap.asynced()(fn, args_tuples)
            r5 = await pool.unordered_imap.asynced()(process_item, items)  # list
            r6 = await pool.star().unordered_imap.asynced()(fn, args_tuples)
            return r1, r2, r3, r4, r5, r6

        r1, r2, r3, r4, r5, r6 = asyncio.run(main())
        assert sorted(r1) == SQUARES and sorted(r2) == ARGS_TUPLES
        assert r3 == SQUARES and r4 == ARGS_TUPLES
        assert isinstance(r5, list) and sorted(r5) == SQUARES and sorted(r6) == ARGS_TUPLES

        # the star() section's "works with all methods" list
        assert pool.star().map(fn, ARGS_TUPLES) == ARGS_TUPLES
        assert list(pool.star().imap(fn, ARGS_TUPLES)) == ARGS_TUPLES
        assert sorted(pool.star().unordered_imap(fn, ARGS_TUPLES)) == ARGS_TUPLES
        assert sorted(pool.star().unordered_map(fn, ARGS_TUPLES)) == ARGS_TUPLES


def test_pool_map_is_input_order_unordered_is_completion_order(start_method):
    with Pool(workers=2) as pool:
        assert pool.map(slow_fn, [0.5, 0.0]) == [0.5, 0.0]
        # two items, two workers: the fast one completes first
        assert pool.unordered_map(slow_fn, [1.0, 0.0]) == [0.0, 1.0]
        assert list(pool.unordered_imap(slow_fn, [1.0, 0.0])) == [0.0, 1.0]


def test_pool_slow_item_does_not_hold_back_fast_items(start_method):
    with Pool(workers=2) as pool:
        pool.map(slow_fn, [0.0, 0.0])  # workers up
        results = pool.unordered_map(slow_fn, [1.5, 0.0, 0.0, 0.0])
        assert results == [0.0, 0.0, 0.0, 1.5]


def test_pool_timeout_raises_result_timeout_error(start_method):
    with Pool(workers=2) as pool:
        with pytest.raises(ResultTimeoutError):
            pool.map.timeout(0.5)(slow_fn, [30.0, 0.0])
        with pytest.raises(ResultTimeoutError):
            for _ in pool.imap.timeout(0.5)(slow_fn, [0.0, 30.0]):
                pass
        # the pool stays usable: stuck workers were replaced
        assert pool.map(process_item, [1, 2, 3]) == [1, 4, 9]


def test_pool_with_skprocess_items(start_method):
    pool = Pool(workers=4)
    try:
        items = [10, 20, 30, 40]
        # Pool creates instances and runs them
        results = pool.map(ProcessItem, items)
        assert results == [heavy_computation(i) for i in items]
    finally:
        pool.close()


def test_pool_context_manager_close_terminate(start_method, tmp_path):
    with Pool(workers=4) as pool:
        results = pool.map(process_item, ITEMS)
    # pool is closed on exit
    assert results == SQUARES

    pool = Pool(workers=2)
    assert pool.map(process_item, [3]) == [9]
    pool.close()  # wait for all active processes to finish
    pool = Pool(workers=2)
    started = tmp_path / "started"
    future = pool.map.background()(hs.mark_and_sleep, [str(started), str(started)])
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:  # a task is running
        time.sleep(0.01)
    assert started.exists()
    pool.terminate()  # forcefully terminate all processes
    with pytest.raises(ProcessError):
        future.result(timeout=60)


# -- Share ---------------------------------------------------------------------------


def test_share_intro_and_increment_process(start_method, capfd):
    share = Share()
    share.timer = Sktimer()
    share.counter = 0
    assert share.counter == 0 and isinstance(share.counter, int)
    share.timer.add_time(0.5)
    assert share.timer.num_times == 1

    pool = Pool(workers=4)
    try:
        pool.map(IncrementProcess, [share] * 10)
    finally:
        pool.close()

    print(share.counter)  # 100 (10 processes x 10 runs each)
    assert capfd.readouterr().out.strip() == "100"
    assert share.counter == 100
    share.stop()


def test_pool_worker_survives_stderr_without_fileno(start_method, capsys):
    with Pool(workers=2) as pool:
        assert pool.map(process_item, [1, 2, 3]) == [1, 4, 9]


def test_share_start_stop_exit(start_method):
    share = Share()  # auto-starts
    assert share.is_running is True and share.has_error is False
    share.counter = 1

    # stop sharing (frees resources)
    assert share.stop() is True
    assert share.is_running is False
    # or
    share.exit()

    # While stopped, changes are queued but won't take effect until start() is called.
    with pytest.warns(RuntimeWarning, match="stopped"):
        share.counter += 4

    # start again
    share.start()
    assert share.is_running is True
    assert share.counter == 5

    share.clear()
    assert not hasattr(share, "counter")
    assert share.exit(timeout=5.0) is True


def test_share_reconnect_all_sqlite():
    share = Share()
    share.db = sqlite3.connect(":memory:")

    # share.db is a Reconnector in Share
    reconnected = share.reconnect_all()

    # now it's a live connection again
    conn = reconnected["db"]
    assert isinstance(conn, sqlite3.Connection)
    assert conn.execute("select 6 * 7").fetchone() == (42,)
    conn.close()
    share.stop()


def test_share_context_manager(start_method):
    with Share() as share:
        share.counter = 0
        # ... use share ...
        with Pool(workers=2) as pool:
            pool.map(IncrementProcess, [share] * 3)
        assert share.counter == 30
    # automatically stopped on exit
    assert share.is_running is False


def test_share_supported_objects():
    with Share() as share:
        share.pairs = zip([1, 2], [3, 4], strict=True)
        assert list(share.pairs) == [(1, 3), (2, 4)]
        share.numbered = enumerate("ab")
        assert list(share.numbered) == [(0, "a"), (1, "b")]
        import multiprocessing

        with pytest.raises((TypeError, ValueError)):
            share.q = multiprocessing.get_context().Queue()
        assert not hasattr(share, "q")


# -- Pipe ----------------------------------------------------------------------------


def test_pipe_pair_send_recv_and_lock():
    # bidirectional (default)
    anchor, point = Pipe.pair()
    anchor.send({"data": [1, 2, 3]})
    data = point.recv()
    assert data == {"data": [1, 2, 3]}
    point.send({"status": "received"})
    response = anchor.recv()
    assert response == {"status": "received"}

    point.lock()    # prevent transfer
    assert point.locked
    point.unlock()  # allow transfer
    assert not point.locked
    anchor.lock()   # always locked
    with pytest.raises(Exception) as info:
        anchor.unlock()  # raises PipeEndpointError
    from suitkaise.processing import PipeEndpointError

    assert isinstance(info.value, PipeEndpointError)
    anchor.close()
    point.close()


def test_pipe_with_skprocess(start_method):
    # parent
    anchor, point = Pipe.pair()

    process = PipeProcess(point)
    process.start()

    anchor.send({"action": "compute", "value": 42})
    result = anchor.recv()

    process.wait()
    assert result == {"action": "compute", "result": 84}
    anchor.close()
    point.close()


def test_pipe_one_way(start_method):
    # one-way
    anchor, point = Pipe.pair(one_way=True)
    process = OneWayReader(point)
    process.start()
    anchor.send("first")
    anchor.send({"second": 2})
    assert process.result() == ["first", {"second": 2}]
    # the anchor is send-only, the point receive-only
    with pytest.raises(Exception):  # noqa: B017 - the type is the pipe package's choice
        anchor.recv()
    with pytest.raises(Exception):  # noqa: B017
        point.send("x")
    anchor.close()
    point.close()


def test_locked_point_cannot_travel(start_method):
    from suitkaise.cucumber import SerializationError
    from suitkaise.processing import PipeEndpointError

    anchor, point = Pipe.pair()
    point.lock()

    # start() refuses before anything is spawned; the cause names the locked point
    with pytest.raises(SerializationError, match="cannot be transferred") as info:
        PipeProcess(point).start()
    assert isinstance(info.value.__cause__, PipeEndpointError)
    assert "pipe" in str(info.value)
    anchor.close()
    point.close()


def test_locked_point_error_names_the_attribute():
    from suitkaise.cucumber import SerializationError

    anchor, point = Pipe.pair()
    point.lock()
    try:
        with pytest.raises(SerializationError) as info:
            PipeProcess(point).start()
        assert "Path: root.pipe\n" in str(info.value)
    finally:
        anchor.close()
        point.close()


# -- autoreconnect (real PostgreSQL and Redis) ----------------------------------------


def test_autoreconnect_postgres_and_redis(start_method, postgres_server, redis_server):
    psycopg2 = pytest.importorskip("psycopg2")
    redis = pytest.importorskip("redis")
    secret = postgres_server.password
    redis_pass = redis_server.password

    @autoreconnect(
        start_threads=True,
        **{
            "psycopg2.Connection": {"*": secret},
            "redis.Redis": {"*": redis_pass},
        }
    )
    class MyProcess(Skprocess):
        def __init__(self, db_connection, cache_connection):
            self.db = db_connection
            self.cache = cache_connection

        def __run__(self):
            # db and cache are automatically reconnected
            # (the page writes self.db.execute(...): a psycopg2 connection has no
            # execute(); a cursor runs the statement)
            self.db.cursor().execute("insert into sk_howto values (%s)", (self._current_run,))
            self.db.commit()
            self.cache.get("sk-howto")

    class MyProcessWithResult(MyProcess):  # runs=None on the page: stop after 3 runs
        def __postrun__(self):
            self.cache.incr("sk-howto")
            if self._current_run == 2:
                self.stop()

        def __result__(self):
            cur = self.db.cursor()
            cur.execute("select count(*) from sk_howto")
            return type(self.db).__module__, int(self.cache.get("sk-howto")), cur.fetchone()[0]

    conn = psycopg2.connect(postgres_server.dsn)
    conn.autocommit = True
    conn.cursor().execute("drop table if exists sk_howto; create table sk_howto (x int)")
    client = redis.Redis(host=redis_server.host, port=redis_server.port, password=redis_pass)
    client.set("sk-howto", 0)
    try:
        assert MyProcessWithResult(conn, client).run.timeout(120)() == ("psycopg2.extensions", 3, 3)
    finally:
        conn.close()
        client.close()


def test_autoreconnect_multiple_connections(start_method, postgres_server):
    psycopg2 = pytest.importorskip("psycopg2")
    admin = psycopg2.connect(postgres_server.dsn)
    admin.autocommit = True
    cur = admin.cursor()
    for role, pw in (("sk_main", "default_password"), ("sk_analytics", "analytics_secret")):
        cur.execute(f"drop role if exists {role}")
        cur.execute(f"create role {role} login password %s", (pw,))
    admin.close()
    base = f"host={postgres_server.host} port={postgres_server.port} dbname={postgres_server.dbname}"

    @autoreconnect(**{
        "psycopg2.Connection": {
            "*": "default_password",           # default for all psycopg2 connections
            "analytics_db": "analytics_secret", # specific override for analytics_db attr
        },
    })
    class MyProcess(Skprocess):
        def __init__(self):
            self.main_db = psycopg2.connect(f"{base} user=sk_main password=default_password")      # uses "*" auth
            self.analytics_db = psycopg2.connect(f"{base} user=sk_analytics password=analytics_secret") # uses "analytics_db" auth
            self.process_config.runs = 1

        def __run__(self):
            users = []
            for db in (self.main_db, self.analytics_db):
                c = db.cursor()
                c.execute("select current_user")
                users.append(c.fetchone()[0])
            self.users = users

        def __result__(self):
            return self.users

    process = MyProcess()
    try:
        assert process.run.timeout(120)() == ["sk_main", "sk_analytics"]
    finally:
        process.main_db.close()
        process.analytics_db.close()


# -- exceptions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "error_type", "run"),
    [
        ("prerun", PreRunError, 1),
        ("run", RunError, 1),
        ("postrun", PostRunError, 1),
        ("onfinish", OnFinishError, 2),
        ("result", ResultError, 2),
    ],
)
def test_section_errors(start_method, section, error_type, run):
    process = FailIn(section)
    process.start()
    try:
        result = process.result()
    except ProcessError as e:
        print(f"Process failed: {e}")
        assert type(e) is error_type
        assert e.current_run == run
        assert isinstance(e.original_error, ValueError)
        assert str(e.original_error) == f"boom in {section}"
    else:
        pytest.fail(f"result() returned {result!r} instead of raising {error_type.__name__}")


def test_error_handler_error(start_method):
    process = FailThenBadHandler()
    process.start()
    with pytest.raises(ErrorHandlerError) as info:
        process.result()
    assert isinstance(info.value.original_error, KeyError)


def test_result_timeout_error(start_method):
    process = Silent()
    process.start()
    try:
        try:
            process.result.timeout(0.3)()
        except ResultTimeoutError:
            timed_out = True  # "Timed out waiting for result"
        else:
            timed_out = False
        assert timed_out
        with pytest.raises(ResultTimeoutError):
            process.wait.timeout(0.3)()
        with pytest.raises(ResultTimeoutError):
            process.listen.timeout(0.3)()
    finally:
        process.stop()
        assert process.wait(timeout=30)


def test_warnings_filter_is_clean():
    # Creating and stopping a Share emits no resource-tracker or other warnings.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        share = Share()
        share.x = 1
        assert share.stop() is True
