"""The one table of lifecycle sections; everything else derives from it.

Each section's dunder name is spelled once, on its error class
(``RunError.section == "__run__"``). From this table come: the methods
``Skprocess.__init_subclass__`` wraps, the ``process_config.timeouts`` fields
that ``validate`` checks, the ``ProcessTimers`` attributes, the section codes
published in the control array (which section is running, for the parent's
deadline watch) and which sections are retried with lives.
"""

from __future__ import annotations

from typing import NamedTuple

from suitkaise.processing._errors import (
    ErrorHandlerError,
    OnFinishError,
    PostRunError,
    PreRunError,
    ResultError,
    RunError,
    _SectionError,
)

__all__ = ["BY_DUNDER", "BY_KEY", "DUNDERS", "KEYS", "LOOP", "SECTIONS", "Section"]


class Section(NamedTuple):
    """One lifecycle section."""

    key: str  # "run": timeout field, ProcessTimers attribute, timer key
    dunder: str  # "__run__": the method users define
    error: type[_SectionError]  # raised when the method raises
    code: int  # published in ctrl while the section runs (0 = none)
    in_loop: bool  # prerun/run/postrun: once per iteration, retried with lives


def _section(error: type[_SectionError], code: int, in_loop: bool) -> Section:
    return Section(error.section.strip("_"), error.section, error, code, in_loop)


SECTIONS: tuple[Section, ...] = (
    _section(PreRunError, 1, True),
    _section(RunError, 2, True),
    _section(PostRunError, 3, True),
    _section(OnFinishError, 4, False),
    _section(ResultError, 5, False),
    _section(ErrorHandlerError, 6, False),
)
BY_DUNDER: dict[str, Section] = {s.dunder: s for s in SECTIONS}
BY_KEY: dict[str, Section] = {s.key: s for s in SECTIONS}
BY_CODE: dict[int, Section] = {s.code: s for s in SECTIONS}
DUNDERS: tuple[str, ...] = tuple(s.dunder for s in SECTIONS)
KEYS: tuple[str, ...] = tuple(s.key for s in SECTIONS)
LOOP: tuple[Section, ...] = tuple(s for s in SECTIONS if s.in_loop)
