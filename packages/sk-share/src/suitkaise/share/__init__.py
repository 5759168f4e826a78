"""suitkaise.share: put any object on a ``Share`` and every process sees the same state.

::

    from suitkaise.share import Share

    share = Share()
    share.counter = 0
    # pass `share` to other processes; in any of them:
    share.counter += 1          # one atomic fetch-and-add
    share.log.append("done")    # atomic, never lost

See README.md for the design (shared memory + a robust lock; `share.serve()` adds
authenticated TCP access for processes on other hosts; ``Share(backend="redis://...")``
keeps the state in Redis instead, for processes on many machines).
"""

from __future__ import annotations

from ._share import Proxy, Share, ShareError

__version__ = "0.5.0"

__all__ = ["Proxy", "Share", "ShareError", "__version__"]
