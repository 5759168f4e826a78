"""Integration suite configuration.

Scenarios run under fork and spawn by default (the two start methods whose
transfer paths differ most: inherited memory vs. a fresh interpreter);
``--start-methods=fork,spawn,forkserver`` on the command line widens the set.
The ``start_method`` fixture, the leak check and the database servers come
from the auto-loaded sk_testkit plugin.
"""

from __future__ import annotations

import pytest

DEFAULT_START_METHODS = "fork,spawn"


def pytest_configure(config: pytest.Config) -> None:
    # The plugin's default is every start method; narrow it unless the user chose.
    option = config.option
    given = any(a == "--start-methods" or a.startswith("--start-methods=") for a in config.invocation_params.args)
    if not given and getattr(option, "start_methods", None) is not None:
        option.start_methods = DEFAULT_START_METHODS
