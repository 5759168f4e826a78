"""process_config refuses unknown fields: a typo must not leave the default in place silently."""

from __future__ import annotations

import copy
import pickle

import pytest

from suitkaise import cucumber
from suitkaise.processing import PreRunError, Skprocess
from suitkaise.processing._config import ProcessConfig, TimeoutConfig

CONFIG_FIELDS = "runs, join_in, lives, timeouts, checkpoint, context"
TIMEOUT_FIELDS = "prerun, run, postrun, onfinish, result, error"


class TypoRuns(Skprocess):
    def __init__(self):
        self.process_config.run = 3  # typo for runs: would loop until stop()


class TypoTimeout(Skprocess):
    def __init__(self):
        self.process_config.runs = 1
        self.process_config.timeouts.rnu = 1  # typo for run


class TypoInChild(Skprocess):
    def __init__(self):
        self.process_config.runs = 1

    def __prerun__(self):
        self.process_config.lifes = 2


def test_typo_in_process_config_names_the_field_and_the_valid_ones():
    with pytest.raises(AttributeError) as info:
        TypoRuns()
    assert str(info.value) == (
        f"process_config has no field 'run' (did you mean 'runs'?); its fields are: {CONFIG_FIELDS}"
    )


def test_typo_in_timeouts_names_the_field_and_the_valid_ones():
    with pytest.raises(AttributeError) as info:
        TypoTimeout()
    assert str(info.value) == (
        f"process_config.timeouts has no field 'rnu' (did you mean 'run'?); its fields are: {TIMEOUT_FIELDS}"
    )


def test_unknown_field_without_a_close_match():
    with pytest.raises(AttributeError, match=f"^process_config has no field 'zzz'; its fields are: {CONFIG_FIELDS}$"):
        ProcessConfig().zzz = 1
    with pytest.raises(AttributeError, match="no field 'lifes' \\(did you mean 'lives'\\?\\)"):
        ProcessConfig(lifes=2)
    with pytest.raises(AttributeError, match="no field 'runn' \\(did you mean 'run'\\?\\)"):
        TimeoutConfig(runn=2)


def test_valid_fields_still_work_and_the_configs_round_trip():
    cfg = ProcessConfig(runs=3, timeouts=TimeoutConfig(run=2.0))
    cfg.lives = 2
    cfg.timeouts.prerun = 1.0
    assert (cfg.runs, cfg.lives, cfg.timeouts.run, cfg.timeouts.prerun, cfg.checkpoint) == (3, 2, 2.0, 1.0, True)
    assert ProcessConfig() == ProcessConfig() and ProcessConfig().timeouts is not ProcessConfig().timeouts
    assert [f for f in CONFIG_FIELDS.split(", ") if getattr(ProcessConfig(), f, "gone") == "gone"] == []
    for back in (pickle.loads(pickle.dumps(cfg)), cucumber.deserialize(cucumber.serialize(cfg)), copy.deepcopy(cfg)):
        assert back == cfg
        with pytest.raises(AttributeError, match="did you mean 'runs'"):
            back.run = 1


def test_typo_inside_the_child_is_a_section_error(start_method):
    with pytest.raises(PreRunError) as info:
        TypoInChild().run.timeout(60)()
    assert isinstance(info.value.original_error, AttributeError)
    assert "no field 'lifes' (did you mean 'lives'?)" in str(info.value)


# -- a lifecycle that cannot be what its author meant: start() refuses it -------------------


class MisspelledRun(Skprocess):
    def __init__(self, item: int = 0):
        self.process_config.runs = 3

    def __rnu__(self):
        pass

    def __result__(self):
        return 0


class MisspelledPrerun(Skprocess):
    def __init__(self):
        self.process_config.runs = 1

    def __pre_run__(self):
        pass

    def __run__(self):
        pass


class NoLoopForever(Skprocess):
    def __onfinish__(self):
        pass


class NoRun(Skprocess):
    pass


class RunFromBase(Skprocess):
    def __run__(self):
        self.n = getattr(self, "n", 0) + 1

    def __repr__(self):  # a Python special name close to __prerun__: not a typo
        return "RunFromBase()"

    def __result__(self):
        return self.n


class InheritsRun(RunFromBase):
    def __init__(self):
        self.process_config.runs = 2


class OnlyPostrun(Skprocess):  # the how-to page's IncrementProcess shape: no __run__ is fine
    def __init__(self):
        self.n = 0
        self.process_config.runs = 3

    def __postrun__(self):
        self.n += 1

    def __result__(self):
        return self.n


def test_a_misspelled_section_is_refused_at_start_naming_the_section():
    # before: __rnu__ was never called and run() returned 0; __pre_run__ was silently ignored
    with pytest.raises(TypeError, match=r"^MisspelledRun defines __rnu__, which is not a lifecycle method .* did you mean __run__\?$"):
        MisspelledRun().run()
    with pytest.raises(TypeError, match=r"MisspelledPrerun defines __pre_run__.*did you mean __prerun__\?"):
        MisspelledPrerun().start()


def test_no_loop_section_and_no_runs_is_refused_instead_of_spinning_forever():
    # before: start() succeeded and the child looped doing nothing until stop()
    for cls in (NoRun, NoLoopForever):
        with pytest.raises(TypeError, match=rf"^{cls.__name__} defines no __run__ .* it would loop doing nothing until stop\(\)"):
            cls().start()


def test_a_bad_lifecycle_is_refused_inline_and_by_a_pool():
    from suitkaise.processing import Pool
    from suitkaise.processing._inline import run_inline

    with pytest.raises(TypeError, match="MisspelledRun defines __rnu__"):
        run_inline(MisspelledRun())
    with Pool(1) as pool, pytest.raises(TypeError, match="MisspelledRun defines __rnu__"):
        pool.map(MisspelledRun, [1])


def test_lifecycles_that_are_meant_still_run():
    assert InheritsRun().run() == 2
    assert OnlyPostrun().run() == 3
