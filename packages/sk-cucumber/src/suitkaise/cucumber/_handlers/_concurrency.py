"""Generators, coroutines, futures, executors, weak references, context variables, frames.

=============================================  ===============================================
type                                           comes back as
=============================================  ===============================================
generator                                      a plain ``list_iterator`` over the values the
                                               generator had left. Serializing RUNS the
                                               generator to its end: **the original is then
                                               exhausted**. More than 100 000 remaining values
                                               (or an endless generator) is refused with a
                                               ``TypeError`` (the values read so far are gone
                                               from the original: say so, never hang).
                                               Iterators pickle already carries (``iter(list)``,
                                               ``enumerate``, ``zip``, ``map``, ``itertools``
                                               ...) keep pickle's behaviour; a generator inside
                                               them is drained as above.
coroutine / async generator                    :class:`~suitkaise.cucumber.placeholders.
                                               DeserializedCoroutine` / ``...AsyncGenerator``
``asyncio.Future`` / ``asyncio.Task``          :class:`~suitkaise.cucumber.placeholders.
                                               DeserializedFuture` (done/cancelled/result/
                                               exception as at serialization time)
``concurrent.futures.Future``                  a real ``Future``: finished ones keep their
                                               result or exception, cancelled ones are
                                               cancelled, pending/running ones come back
                                               finished with ``PendingFutureError`` (the result
                                               can only be set in the sender; waiting on the
                                               copy must not hang)
``ThreadPoolExecutor``/``ProcessPoolExecutor``  a fresh executor: same max_workers, thread name
                                               prefix / start method, initializer, initargs,
                                               max_tasks_per_child; no pending work; shut down
                                               if the original was
``weakref.ref`` / ``KeyedRef`` / ``WeakMethod``  a weak reference to the deserialized target.
                                               The payload does NOT keep the target alive: if
                                               nothing else in the deserialized object refers
                                               to it, the reference is dead on arrival (as any
                                               weakref whose target has no other owner). A dead
                                               reference comes back dead. WeakMethod callbacks
                                               are not carried.
``WeakValueDictionary``/``WeakKeyDictionary``/  same type with the live entries (same liveness
``WeakSet``                                    rule as ``weakref.ref``)
``contextvars.ContextVar``                     a NEW variable with the same name and default
                                               (values set in the sender's context stay there)
``contextvars.Token``                          :class:`~suitkaise.cucumber.placeholders.
                                               DeserializedToken`
frame                                          :class:`~suitkaise.cucumber.placeholders.
                                               FrameInfo`
``@contextmanager`` objects (sync and async)   same type, recreated from func/args/kwds: a
                                               fresh, not-yet-entered context manager
=============================================  ===============================================
"""

from __future__ import annotations

from typing import Any

from suitkaise.cucumber._registry import register

__all__: list[str] = []

GENERATOR_CAP = 100_000


# -- generators and coroutines ---------------------------------------------------------------


@register("builtins.generator")
def _reduce_generator(gen: Any) -> Any:
    import itertools

    if gen.gi_running:
        raise TypeError(
            f"cannot serialize generator {gen.__qualname__}() from inside itself (it is running)"
        )
    values = list(itertools.islice(gen, GENERATOR_CAP + 1))
    if len(values) > GENERATOR_CAP:
        raise TypeError(
            f"generator {gen.__qualname__}() has more than {GENERATOR_CAP:,} values left (or never "
            f"ends); cucumber carries a generator as the list of its remaining values. The first "
            f"{GENERATOR_CAP + 1:,} values have been consumed. Send the generator function and its "
            "arguments instead, and create the generator in the receiver."
        )
    return (iter, (values,))


@register("builtins.coroutine")
def _reduce_coroutine(coro: Any) -> Any:
    import inspect

    from suitkaise.cucumber.placeholders import DeserializedCoroutine

    state = inspect.getcoroutinestate(coro)
    return (DeserializedCoroutine, (coro.__name__, coro.__qualname__, state))


@register("builtins.async_generator")
def _reduce_async_generator(agen: Any) -> Any:
    from suitkaise.cucumber.placeholders import DeserializedAsyncGenerator

    return (
        DeserializedAsyncGenerator,
        (agen.__name__, agen.__qualname__, bool(agen.ag_running), agen.ag_frame is None),
    )


# -- futures ----------------------------------------------------------------------------------


@register("_asyncio.Future", "_asyncio.Task", "asyncio.futures.Future", "asyncio.tasks.Task")
def _reduce_asyncio_future(fut: Any) -> Any:
    import asyncio

    is_task = isinstance(fut, asyncio.Task)
    fields: dict[str, Any] = {
        "is_task": is_task,
        "name": fut.get_name() if is_task else None,
        "coro_qualname": getattr(fut.get_coro(), "__qualname__", None) if is_task else None,
    }
    if not fut.done():
        fields["state"] = "PENDING"
    elif fut.cancelled():
        fields["state"] = "CANCELLED"
    else:
        fields["state"] = "FINISHED"
        exc = fut.exception()
        fields["exception"] = exc
        fields["result"] = None if exc is not None else fut.result()
    return (_rebuild_asyncio_future, (fields,))


def _rebuild_asyncio_future(fields: dict[str, Any]) -> Any:
    from suitkaise.cucumber.placeholders import DeserializedFuture

    return DeserializedFuture(**fields)


@register("concurrent.futures._base.Future")
def _reduce_cf_future(fut: Any) -> Any:
    with fut._condition:  # one consistent view of state/result/exception
        state, result, exc = fut._state, fut._result, fut._exception
    if state == "FINISHED":
        return (_rebuild_cf_future, (type(fut), "FINISHED", result, exc))
    if state in ("CANCELLED", "CANCELLED_AND_NOTIFIED"):
        return (_rebuild_cf_future, (type(fut), "CANCELLED", None, None))
    return (_rebuild_cf_future, (type(fut), state, None, None))


def _rebuild_cf_future(cls: Any, state: str, result: Any, exc: BaseException | None) -> Any:
    from suitkaise.cucumber.placeholders import PendingFutureError

    fut = cls()
    if state == "FINISHED":
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
    elif state == "CANCELLED":
        fut.cancel()
    else:
        fut.set_exception(
            PendingFutureError(
                f"this Future was {state} when it was serialized; its result can only be set in "
                "the process that ran the task. Send the result (future.result()) instead."
            )
        )
    return fut


# -- executors --------------------------------------------------------------------------------


@register("concurrent.futures.thread.ThreadPoolExecutor")
def _reduce_thread_pool(ex: Any) -> Any:
    return (
        _rebuild_thread_pool,
        (type(ex), ex._max_workers, ex._thread_name_prefix, ex._initializer, ex._initargs,
         ex._shutdown),
    )


def _rebuild_thread_pool(
    cls: Any, max_workers: int, prefix: str, initializer: Any, initargs: tuple[Any, ...],
    shutdown: bool,
) -> Any:
    from concurrent.futures import ThreadPoolExecutor

    ex = cls.__new__(cls)
    ThreadPoolExecutor.__init__(ex, max_workers, prefix, initializer, initargs)
    if shutdown:
        ex.shutdown(wait=False)
    return ex


@register("concurrent.futures.process.ProcessPoolExecutor")
def _reduce_process_pool(ex: Any) -> Any:
    method = ex._mp_context.get_start_method()
    return (
        _rebuild_process_pool,
        (type(ex), ex._max_workers, method, ex._initializer, ex._initargs,
         getattr(ex, "_max_tasks_per_child", None), ex._shutdown_thread),
    )


def _rebuild_process_pool(
    cls: Any, max_workers: int, method: str, initializer: Any, initargs: tuple[Any, ...],
    max_tasks_per_child: int | None, shutdown: bool,
) -> Any:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ex = cls.__new__(cls)
    ProcessPoolExecutor.__init__(
        ex, max_workers, multiprocessing.get_context(method), initializer, initargs,
        max_tasks_per_child=max_tasks_per_child,
    )
    if shutdown:
        ex.shutdown(wait=False)
    return ex


# -- weak references ------------------------------------------------------------------------


class _Gone:
    """A throwaway referent: weak references to it are dead as soon as they exist."""

    def method(self) -> None:  # pragma: no cover - only referenced weakly
        pass


@register("weakref.ReferenceType")
def _reduce_weakref(ref: Any) -> Any:
    import weakref

    extra: dict[str, Any] | None = None
    if type(ref) is not weakref.ref:  # a user subclass may carry attributes
        try:
            extra = dict(vars(ref)) or None
        except TypeError:  # __slots__ subclass
            extra = None
    return (_rebuild_weakref, (type(ref), ref(), ref.__callback__), extra)


def _rebuild_weakref(cls: Any, target: Any, callback: Any) -> Any:
    import weakref

    if target is None:
        target = _Gone()  # dies when this function returns: the reference is dead
    if cls is weakref.ref:
        return weakref.ref(target, callback)
    return cls.__new__(cls, target, callback)


@register("weakref.KeyedRef")
def _reduce_keyed_ref(ref: Any) -> Any:
    return (_rebuild_keyed_ref, (type(ref), ref(), ref.__callback__, ref.key))


def _rebuild_keyed_ref(cls: Any, target: Any, callback: Any, key: Any) -> Any:
    if target is None:
        target = _Gone()
    return cls(target, callback, key)


@register("weakref.WeakMethod")
def _reduce_weak_method(ref: Any) -> Any:
    return (_rebuild_weak_method, (type(ref), ref()))


def _rebuild_weak_method(cls: Any, method: Any) -> Any:
    if method is None:
        method = _Gone().method
    return cls(method)


@register("weakref.WeakValueDictionary", "weakref.WeakKeyDictionary")
def _reduce_weak_dict(d: Any) -> Any:
    return (_rebuild_weak_container, (type(d), list(d.items())))


@register("_weakrefset.WeakSet")
def _reduce_weak_set(s: Any) -> Any:
    return (_rebuild_weak_container, (type(s), list(s)))


def _rebuild_weak_container(cls: Any, items: list[Any]) -> Any:
    return cls(items)


# -- context variables ---------------------------------------------------------------------------

@register("_contextvars.ContextVar")
def _reduce_context_var(var: Any) -> Any:
    import contextvars

    try:  # in an empty context, get() returns the default or raises LookupError
        default = contextvars.Context().run(var.get)
        has_default = True
    except LookupError:
        default, has_default = None, False
    return (_rebuild_context_var, (var.name, has_default, default))


def _rebuild_context_var(name: str, has_default: bool, default: Any) -> Any:
    import contextvars

    if has_default:
        return contextvars.ContextVar(name, default=default)
    return contextvars.ContextVar(name)


@register("_contextvars.Token")
def _reduce_context_token(token: Any) -> Any:
    import contextvars

    from suitkaise.cucumber.placeholders import DeserializedToken

    missing = token.old_value is contextvars.Token.MISSING
    return (DeserializedToken, (token.var, None if missing else token.old_value, missing))


# -- frames and context managers -------------------------------------------------------------------


@register("builtins.frame")
def _reduce_frame(frame: Any) -> Any:
    from suitkaise.cucumber.placeholders import FrameInfo

    code = frame.f_code
    module = frame.f_globals.get("__name__")
    local_names = tuple(dict.fromkeys(code.co_varnames + code.co_cellvars + code.co_freevars))
    return (
        FrameInfo,
        (code.co_name, code.co_qualname, code.co_filename, frame.f_lineno,
         module if isinstance(module, str) else None, local_names),
    )


@register("contextlib._GeneratorContextManager", "contextlib._AsyncGeneratorContextManager")
def _reduce_generator_cm(cm: Any) -> Any:
    return (_rebuild_generator_cm, (type(cm), cm.func, cm.args, cm.kwds))


def _rebuild_generator_cm(cls: Any, func: Any, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
    return cls(func, args, kwds)


# -- builtin descriptors ----------------------------------------------------------------------
# pickle reduces a descriptor to getattr(owner, name), which for descriptors of a
# metaclass (type.__dict__["__name__"]) returns the *value* ('type'), not the descriptor.


@register("builtins.getset_descriptor", "builtins.member_descriptor",
          "builtins.classmethod_descriptor")
def _reduce_descriptor(d: Any) -> Any:
    return (_rebuild_descriptor, (d.__objclass__, d.__name__))


def _rebuild_descriptor(owner: type, name: str) -> Any:
    for klass in owner.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    raise AttributeError(f"{owner.__qualname__} has no descriptor {name!r} in this process")
