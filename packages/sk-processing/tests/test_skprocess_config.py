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
