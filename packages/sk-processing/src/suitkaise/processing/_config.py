"""``process_config``: runs, join_in, lives, checkpoint, start method and per-section timeouts.

Plain dataclasses so users set fields in ``__init__``
(``self.process_config.runs = 10``); ``validate`` checks them at
``start()`` (and in a Pool worker) and raises a ``TypeError``/``ValueError``
that names the field, the bad value and what is accepted. Setting a field that
does not exist raises ``AttributeError`` at once: a typo (``.run = 3`` for
``.runs``) would otherwise leave ``runs`` at ``None`` and the process looping
until ``stop()``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from suitkaise.processing._context import check_context
from suitkaise.processing._sections import KEYS

__all__ = ["ProcessConfig", "TimeoutConfig", "validate"]

_F = TypeVar("_F", bound="_Fields")


class _Fields:
    """A config dataclass that refuses to set an attribute that is not one of its fields.

    The check is ``__setattr__``. ``__init__`` leaves the plain defaults on the class
    (``@dataclass`` puts them there) and only builds the ``default_factory`` ones and the
    fields it is given: dataclass's ``__init__`` would go through the check for every
    field (~1.5 us more per ``Skprocess()``, and a Pool builds one per item). Pickle and
    cucumber restore ``__dict__`` directly; reading an unknown name already raises.
    """

    __slots__ = ()
    _path: ClassVar[str]  # how users reach it, for the message
    _fields: ClassVar[dict[str, None]]  # the field names, in order
    _factories: ClassVar[tuple[tuple[str, Callable[[], Any]], ...]]

    def __init__(self, **values: Any) -> None:
        for name, make in self._factories:
            self.__dict__[name] = make()
        for name, value in values.items():
            setattr(self, name, value)

    if not TYPE_CHECKING:  # (a __setattr__ would make type checkers accept any attribute name)

        def __setattr__(self, name: str, value: Any) -> None:
            if name in self._fields:
                self.__dict__[name] = value  # (half the cost of object.__setattr__ here)
            else:
                raise AttributeError(_unknown_field(self, name))


def _fields_of(cls: type[_F]) -> type[_F]:
    """Record ``cls``'s fields for ``_Fields`` (after ``@dataclass(init=False)``)."""
    cls._fields = dict.fromkeys(f.name for f in fields(cls))  # type: ignore[arg-type]
    cls._factories = tuple(
        (f.name, f.default_factory) for f in fields(cls) if f.default_factory is not MISSING  # type: ignore[arg-type]
    )
    return cls


def _unknown_field(config: _Fields, name: str) -> str:
    valid = list(config._fields)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"{config._path} has no field {name!r}{hint}; "
        f"its fields are: {', '.join(valid)}"
    )


@_fields_of
@dataclass(init=False)
class TimeoutConfig(_Fields):
    """Seconds each lifecycle section may take; ``None`` means no limit."""

    _path = "process_config.timeouts"

    prerun: float | None = None
    run: float | None = None
    postrun: float | None = None
    onfinish: float | None = None
    result: float | None = None
    error: float | None = None


# typed fields for users and mypy; the section table is the authority
assert tuple(f.name for f in fields(TimeoutConfig)) == KEYS


@_fields_of
@dataclass(init=False)
class ProcessConfig(_Fields):
    """How an ``Skprocess`` loops, retries and times out."""

    _path = "process_config"

    runs: int | None = None
    join_in: float | None = None
    lives: int = 1
    timeouts: TimeoutConfig = field(default_factory=TimeoutConfig)
    # with lives > 1: save the state after each iteration so a hard crash resumes there
    checkpoint: bool = True
    # start method of this process ("fork", "spawn", "forkserver"); None: multiprocessing's default
    context: str | None = None


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate(config: object, owner: str = "Skprocess") -> ProcessConfig:
    """Check every field of ``config``; return it unchanged or raise a clear error."""
    where = f"{owner}.process_config"
    if not isinstance(config, ProcessConfig):
        raise TypeError(
            f"{where} must be a ProcessConfig (set its fields, e.g. self.process_config.runs = 10), "
            f"got {type(config).__name__}"
        )
    runs = config.runs
    if runs is not None:
        if isinstance(runs, bool) or not isinstance(runs, int):
            raise TypeError(f"{where}.runs must be an int >= 0 or None (run until stop()), got {runs!r}")
        if runs < 0:
            raise ValueError(f"{where}.runs must be >= 0 or None, got {runs}")
    join_in = config.join_in
    if join_in is not None:
        if not _is_real(join_in):
            raise TypeError(f"{where}.join_in must be seconds (int/float) or None, got {join_in!r}")
        if not join_in >= 0 or math.isnan(join_in):
            raise ValueError(f"{where}.join_in must be >= 0 seconds or None, got {join_in}")
    lives = config.lives
    if isinstance(lives, bool) or not isinstance(lives, int):
        raise TypeError(f"{where}.lives must be an int >= 1 (1 = no retries), got {lives!r}")
    if lives < 1:
        raise ValueError(f"{where}.lives must be >= 1 (1 = no retries), got {lives}")
    if not isinstance(config.checkpoint, bool):
        raise TypeError(
            f"{where}.checkpoint must be True (resume after the last completed iteration when a crash "
            f"costs a life) or False (restart from the start state), got {config.checkpoint!r}"
        )
    if config.context is not None and not isinstance(config.context, str):
        raise TypeError(
            f"{where}.context must be a start method name (\"fork\", \"spawn\", \"forkserver\") or "
            f"None (multiprocessing's default), got {type(config.context).__name__} {config.context!r}"
        )
    check_context(config.context, f"{where}.context")
    timeouts = config.timeouts
    if not isinstance(timeouts, TimeoutConfig):
        raise TypeError(
            f"{where}.timeouts must be a TimeoutConfig (set its fields, e.g. "
            f"self.process_config.timeouts.run = 5.0), got {type(timeouts).__name__}"
        )
    for name in KEYS:
        value = getattr(timeouts, name)
        if value is None:
            continue
        if not _is_real(value):
            raise TypeError(f"{where}.timeouts.{name} must be seconds (int/float) or None, got {value!r}")
        if not value > 0 or math.isinf(value):
            raise ValueError(f"{where}.timeouts.{name} must be a finite number of seconds > 0 or None, got {value}")
    return config
