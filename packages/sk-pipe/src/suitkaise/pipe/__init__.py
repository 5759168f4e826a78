"""suitkaise.pipe: a fast parent/child pipe with an Anchor end and a Point end.

>>> from suitkaise.pipe import Pipe
>>> anchor, point = Pipe.pair()
>>> anchor.send({"x": 1}); point.recv()
{'x': 1}

The Anchor stays in the creating process (always locked); the Point is
handed to a child process (in ``multiprocessing.Process`` args, inside an
``Skprocess``, or through another pipe/queue). Objects travel through
``suitkaise.cucumber``; large buffers (numpy arrays, big bytes) are sent
out-of-band without extra copies. Only ``sk-cucumber`` is required.

``suitkaise.pipe.wire`` is the message framing itself (the buffer rule, one
message layout on a file descriptor); the ``Pool`` of sk-processing speaks it
too.
"""

from __future__ import annotations

from suitkaise.pipe import wire
from suitkaise.pipe._errors import PipeEndpointError
from suitkaise.pipe._pipe import Pipe

__all__ = ["Pipe", "PipeEndpointError", "__version__", "wire"]

__version__ = "0.5.0"
