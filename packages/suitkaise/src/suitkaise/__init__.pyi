"""What type checkers and IDEs see of ``suitkaise``: the re-exports of ``__init__.py``.

``__init__.py`` resolves these names lazily from its ``_EXPORTS`` table; this stub lists the
same names statically. tests/test_suitkaise_meta.py checks that the two agree.
"""

from suitkaise import cucumber as cucumber
from suitkaise import pipe as pipe
from suitkaise import processing as processing
from suitkaise import share as share
from suitkaise import timing as timing
from suitkaise.cucumber import DeserializationError as DeserializationError
from suitkaise.cucumber import Reconnector as Reconnector
from suitkaise.cucumber import ReconnectWarning as ReconnectWarning
from suitkaise.cucumber import SerializationError as SerializationError
from suitkaise.cucumber import deserialize as deserialize
from suitkaise.cucumber import ir_to_json as ir_to_json
from suitkaise.cucumber import ir_to_jsonable as ir_to_jsonable
from suitkaise.cucumber import reconnect_all as reconnect_all
from suitkaise.cucumber import register_handler as register_handler
from suitkaise.cucumber import remote_traceback as remote_traceback
from suitkaise.cucumber import serialize as serialize
from suitkaise.cucumber import serialize_ir as serialize_ir
from suitkaise.cucumber import to_json as to_json
from suitkaise.cucumber import to_jsonable as to_jsonable
from suitkaise.pipe import Pipe as Pipe
from suitkaise.pipe import PipeEndpointError as PipeEndpointError
from suitkaise.processing import DaskBackend as DaskBackend
from suitkaise.processing import ErrorHandlerError as ErrorHandlerError
from suitkaise.processing import ItemError as ItemError
from suitkaise.processing import ItemTimeoutError as ItemTimeoutError
from suitkaise.processing import OnFinishError as OnFinishError
from suitkaise.processing import Pool as Pool
from suitkaise.processing import PostRunError as PostRunError
from suitkaise.processing import PreRunError as PreRunError
from suitkaise.processing import ProcessError as ProcessError
from suitkaise.processing import ProcessTimeoutError as ProcessTimeoutError
from suitkaise.processing import ProcessTimers as ProcessTimers
from suitkaise.processing import QuarantineError as QuarantineError
from suitkaise.processing import ResultError as ResultError
from suitkaise.processing import ResultTimeoutError as ResultTimeoutError
from suitkaise.processing import RunError as RunError
from suitkaise.processing import Skprocess as Skprocess
from suitkaise.processing import TaskFuture as TaskFuture
from suitkaise.processing import WorkerCrashedError as WorkerCrashedError
from suitkaise.processing import autoreconnect as autoreconnect
from suitkaise.processing import worker_id as worker_id
from suitkaise.processing import worker_state as worker_state
from suitkaise.share import Proxy as Proxy
from suitkaise.share import Share as Share
from suitkaise.share import ShareError as ShareError
from suitkaise.timing import Sktimer as Sktimer
from suitkaise.timing import TimerStats as TimerStats
from suitkaise.timing import TimeThis as TimeThis
from suitkaise.timing import clear_global_timers as clear_global_timers
from suitkaise.timing import elapsed as elapsed
from suitkaise.timing import timethis as timethis

__version__: str
