"""Issue 10 item 3, the reported scenario: ``share.items = share.items + [v]`` (and the
set and dict forms) from Skprocess items on Pool workers loses no update. The other forms
are tested in sk-share's test_share_atomic.py; this one needs sk-processing beside it."""

from __future__ import annotations

from suitkaise.processing import Pool, Skprocess
from suitkaise.share import Share

RUNS = 5


class Appender(Skprocess):
    def __init__(self, share: Share, v: int) -> None:
        self.share = share
        self.v = v
        self.process_config.runs = RUNS

    def __run__(self) -> None:
        v = self.v * RUNS + self._current_run
        self.share.items = self.share.items + [v]  # noqa: RUF005 - the issue's form
        self.share.tags = self.share.tags | {v}
        self.share.meta = self.share.meta | {str(v): v}


def test_pool_skprocess_read_modify_reassign_loses_nothing(start_method: str) -> None:
    # the scenario: 40 Skprocess items on 4 workers (each item runs RUNS times)
    with Share() as share:
        share.items, share.tags, share.meta = [], set(), {}
        with Pool(workers=4) as pool:
            pool.star().map(Appender, [(share, v) for v in range(40)])
        total = 40 * RUNS
        assert sorted(share.items) == list(range(total))
        assert share.tags == set(range(total))
        assert share.meta == {str(v): v for v in range(total)}
