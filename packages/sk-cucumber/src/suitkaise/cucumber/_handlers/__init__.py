"""Handlers for live resources, one module per family of types.

Importing this package registers every handler in ``.._registry``.
Handler modules never import the modules that define the types they handle
at import time (that would slow down ``import suitkaise.cucumber``); they
register by qualified type name and import lazily inside reducers.
"""

from suitkaise.cucumber._handlers import _concurrency as _concurrency
from suitkaise.cucumber._handlers import _io as _io
from suitkaise.cucumber._handlers import _logging as _logging
from suitkaise.cucumber._handlers import _mp as _mp
from suitkaise.cucumber._handlers import _reconnecting as _reconnecting
from suitkaise.cucumber._handlers import _sync as _sync
