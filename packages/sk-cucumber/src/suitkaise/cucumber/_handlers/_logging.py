"""Loggers and logging handlers.

* ``Logger``: loggers are per-process singletons, so the receiver gets
  ``logging.getLogger(name)`` (the very same object in the sending process;
  ``RootLogger`` -> the root logger). A logger that already exists in the
  receiver keeps the receiver's configuration untouched (level, handlers,
  filters, propagate, disabled), as with cloudpickle: loading a payload must
  never rewrite the receiver's logging (the root logger always exists, so it is
  never reconfigured). Only a logger the receiver does not have yet gets the
  sender's level, propagate, disabled flag, filters and handlers; a handler
  equivalent to another in the list (same class and target: file path, stream,
  or handler name) is attached once. Handler copies that are not attached are
  closed (a reopened log file is released at once).
* ``Handler`` (any subclass): same class and attributes with a fresh lock,
  registered with logging like a newly created handler (flushed and closed at
  shutdown). ``StreamHandler`` writing to stdout/stderr writes to the
  *receiver's* stdout/stderr; any other stream becomes stderr (a stream object
  cannot follow the handler). ``FileHandler`` and its rotating subclasses
  reopen their file in append mode (never truncating the sender's log), with
  the same encoding, errors and rotation settings.
* ``Formatter`` already round-trips through pickle and needs nothing here.
"""

from __future__ import annotations

from typing import Any

from suitkaise.cucumber._registry import register

__all__: list[str] = []


# -- loggers ----------------------------------------------------------------------------


@register("logging.Logger", "logging.RootLogger")
def _reduce_logger(logger: Any) -> Any:
    import logging

    if isinstance(logger, logging.PlaceHolder):  # pragma: no cover - not a Logger subclass
        return NotImplemented
    name = None if isinstance(logger, logging.RootLogger) else logger.name
    return (
        _rebuild_logger,
        (name, logger.level, logger.propagate, logger.disabled, list(logger.filters),
         list(logger.handlers)),
    )


def _rebuild_logger(
    name: str | None, level: int, propagate: bool, disabled: bool,
    filters: list[Any], handlers: list[Any],
) -> Any:
    import logging

    have = logging.root if name is None else logging.Logger.manager.loggerDict.get(name)
    if isinstance(have, logging.Logger):
        # The receiver's own logger: its configuration is the receiver's business.
        for handler in handlers:
            if handler not in have.handlers:
                _discard(handler, None)
        return have
    logger = logging.getLogger(name)
    logger.setLevel(level)
    logger.propagate = propagate
    logger.disabled = disabled
    for flt in filters:
        if not any(_same_filter(flt, have) for have in logger.filters):
            logger.addFilter(flt)
    existing = {_handler_key(h): h for h in logger.handlers}
    for handler in handlers:
        if handler in logger.handlers:
            continue
        key = _handler_key(handler)
        if key in existing:
            _discard(handler, existing[key])  # the receiver already has an equivalent one
            continue
        existing[key] = handler
        logger.addHandler(handler)
    return logger


def _discard(copy: Any, kept: Any) -> None:
    """Drop a handler copy that is not attached, without disturbing the receiver's own."""
    import logging

    name = copy.get_name()
    if name is not None and logging._handlers.get(name) is copy:  # type: ignore[attr-defined]
        if kept is None:
            del logging._handlers[name]  # type: ignore[attr-defined]
        else:
            logging._handlers[name] = kept  # type: ignore[attr-defined]
    if isinstance(copy, logging.FileHandler) and copy.stream is not None:
        copy.stream.close()
        copy.stream = None


def _same_filter(a: Any, b: Any) -> bool:
    import logging

    if a is b:
        return True
    if type(a) is logging.Filter and type(b) is logging.Filter:
        return bool(a.name == b.name)
    return False


def _handler_key(handler: Any) -> tuple[Any, ...]:
    """What makes two handlers 'the same output' for de-duplication."""
    import logging
    import os

    cls = type(handler)
    ident: Any = handler.get_name()
    if isinstance(handler, logging.FileHandler):
        ident = os.path.abspath(handler.baseFilename)
    elif isinstance(handler, logging.StreamHandler):
        ident = _stream_name(handler.stream) or id(handler.stream)
    return (cls.__module__, cls.__qualname__, ident)


# -- handlers -----------------------------------------------------------------------------


def _stream_name(stream: Any) -> str | None:
    import sys

    for name in ("stdout", "stderr"):
        if stream is getattr(sys, name, None) or stream is getattr(sys, f"__{name}__", None):
            return name
    return None


_NOT_STATE = frozenset({"lock", "_name", "stream"})
_STREAM_KEY = "__cucumber_stream__"


@register("logging.Handler")
def _reduce_handler(handler: Any) -> Any:
    import logging

    state = {k: v for k, v in vars(handler).items() if k not in _NOT_STATE}
    if isinstance(handler, logging.FileHandler):
        handler.flush()
        state[_STREAM_KEY] = ("file", handler.stream is not None)
    elif isinstance(handler, logging.StreamHandler):
        handler.flush()
        state[_STREAM_KEY] = ("std", _stream_name(handler.stream) or "stderr")
    elif "stream" in vars(handler):
        state["stream"] = vars(handler)["stream"]  # a custom handler's own attribute
    return (_rebuild_handler, (type(handler), handler.get_name()), state, None, None,
            _set_handler_state)


def _rebuild_handler(cls: Any, name: str | None) -> Any:
    import logging

    handler = cls.__new__(cls)
    handler._name = None
    handler.createLock()  # a fresh lock, never the sender's
    logging._addHandlerRef(handler)  # type: ignore[attr-defined]  # flushed/closed at exit
    if name is not None:
        if name in logging._handlers:  # type: ignore[attr-defined]
            handler._name = name  # the receiver's handler keeps the name in logging's registry
        else:
            handler.set_name(name)
    return handler


def _set_handler_state(handler: Any, state: dict[str, Any]) -> None:
    import sys

    state = dict(state)
    spec = state.pop(_STREAM_KEY, None)
    handler.__dict__.update(state)
    if spec is None:
        return
    kind, value = spec
    if kind == "std":
        handler.stream = getattr(sys, value)
        return
    # FileHandler family: never truncate the sender's log ('w' -> 'a'), reopen if open.
    mode = handler.mode
    if "w" in mode or "x" in mode:
        handler.mode = mode.replace("w", "a").replace("x", "a")
    handler.stream = handler._open() if value else None
