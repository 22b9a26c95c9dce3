"""BuildConfig: every option is checked where it is declared, with one message style, and the
command line offers exactly what the declarations allow."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest

from factory import BuildConfig, DeviceProfile, FactoryInputError, build
from factory._config import config_parameters
from factory._constraints import StrOptions, StrSequence
from factory._settings import DEFAULT_LEARNERS, SUPPORTED_LEARNERS

METRICS_TEXT = "('accuracy', 'macro_f1', 'roc_auc', 'log_loss')"
LEARNERS_TEXT = repr(SUPPORTED_LEARNERS)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"latency_budget_us": -5}, "The 'latency_budget_us' parameter of BuildConfig must be > 0. Got -5 instead."),
        ({"size_budget_kb": 0}, "The 'size_budget_kb' parameter of BuildConfig must be > 0. Got 0 instead."),
        ({"time_budget_s": math.nan}, "The 'time_budget_s' parameter of BuildConfig must be > 0. Got nan instead."),
        ({"time_budget_s": "60"}, "The 'time_budget_s' parameter of BuildConfig must be > 0. Got '60' instead."),
        ({"metric": "f1"}, f"The 'metric' parameter of BuildConfig must be one of {METRICS_TEXT}. Got 'f1' instead."),
        (
            {"learners": []},
            f"The 'learners' parameter of BuildConfig must be a non-empty list of {LEARNERS_TEXT}. Got [] instead.",
        ),
        (
            {"learners": "lgbm"},  # a bare string is not a list of one learner
            f"The 'learners' parameter of BuildConfig must be a non-empty list of {LEARNERS_TEXT}. Got 'lgbm' instead.",
        ),
        (
            {"learners": ["lgbm", "catboost"]},
            f"The 'learners' parameter of BuildConfig must be a non-empty list of {LEARNERS_TEXT}. "
            "Got ['lgbm', 'catboost'] instead.",
        ),
        ({"n_segments": 1}, "The 'n_segments' parameter of BuildConfig must be an int >= 2 or None. Got 1 instead."),
        ({"seed": True}, "The 'seed' parameter of BuildConfig must be an int >= 0. Got True instead."),
        ({"seed": 1.5}, "The 'seed' parameter of BuildConfig must be an int >= 0. Got 1.5 instead."),
        (
            {"device_profile": 3},
            "The 'device_profile' parameter of BuildConfig must be a path, a DeviceProfile or None. Got 3 instead.",
        ),
        (
            {"numeric_imputer": "mean"},
            "The 'numeric_imputer' parameter of BuildConfig must be one of ('median', 'knn'). Got 'mean' instead.",
        ),
        (
            {"labels": "tier"},
            "The 'labels' parameter of BuildConfig must be one of ('given', 'clusters', 'few'). Got 'tier' instead.",
        ),
        ({"drop": "ID"}, "The 'drop' parameter of BuildConfig must be a list of column names. Got 'ID' instead."),
        ({"target": ""}, "The 'target' parameter of BuildConfig must be a non-empty string or None. Got '' instead."),
        (
            {"target": None},
            "The 'target' parameter of BuildConfig must name the label column when labels='given' "
            "(on the command line: --target). Got None instead.",
        ),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, dict) else None,
)
def test_a_bad_option_is_refused_naming_parameter_constraint_and_value(changes: dict[str, Any], message: str) -> None:
    options: dict[str, Any] = {"target": "segment", **changes}
    with pytest.raises(FactoryInputError) as caught:
        BuildConfig(**options)
    assert str(caught.value) == message


def test_options_are_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        BuildConfig("segment")  # type: ignore[misc]
    config = BuildConfig(target="segment")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.latency_budget_us = 1.0  # type: ignore[misc]


def test_values_are_normalised_so_equal_options_compare_equal(tmp_path: Path) -> None:
    config = BuildConfig(target="y", drop=["a", "b"], learners=["lgbm"], out_dir=str(tmp_path), latency_budget_us=30)
    assert config == BuildConfig(
        target="y", drop=("a", "b"), learners=("lgbm",), out_dir=tmp_path, latency_budget_us=30.0
    )
    assert config.drop == ("a", "b") and config.out_dir == tmp_path and config.latency_budget_us == 30.0
    assert config.budgets.latency_p99_us == 30.0 and config.budgets.size_bytes == 256 * 1024
    assert BuildConfig(labels="clusters").target == "segment"  # clusters write a new column
    assert BuildConfig(target="y", id_column="ID", drop=["x"]).not_inputs == ["x", "ID"]


def test_replace_checks_again() -> None:
    config = BuildConfig(target="segment")
    assert config.replace(time_budget_s=5).time_budget_s == 5.0
    with pytest.raises(FactoryInputError, match="The 'time_budget_s' parameter of BuildConfig must be > 0"):
        config.replace(time_budget_s=0)


def test_device_profile_is_loaded_or_this_machine(tmp_path: Path) -> None:
    assert BuildConfig(target="y").load_device_profile() == DeviceProfile()
    given = DeviceProfile(scale=3.0)
    assert BuildConfig(target="y", device_profile=given).load_device_profile() is given
    path = tmp_path / "till.json"
    path.write_text('{"scale": 2.5}')
    assert BuildConfig(target="y", device_profile=path).load_device_profile().scale == 2.5
    path.write_text('{"scale": 0}')
    with pytest.raises(FactoryInputError, match="'scale' must be a number > 0"):
        BuildConfig(target="y", device_profile=path).load_device_profile()


def test_build_takes_the_options_as_keywords_or_as_a_config(tmp_path: Path) -> None:
    """Checked before the data is read: a bad option costs nothing, and writes nothing."""
    missing = tmp_path / "nope.csv"
    with pytest.raises(FactoryInputError, match="The 'latency_budget_us' parameter of BuildConfig must be > 0"):
        build(missing, target="y", latency_budget_us=-5, out_dir=tmp_path / "out")
    config = BuildConfig(target="y", out_dir=tmp_path / "out")
    with pytest.raises(FactoryInputError, match="The 'metric' parameter of BuildConfig must be one of"):
        build(missing, config, metric="f1")  # keywords override the config's fields, checked again
    with pytest.raises(TypeError, match="latency_budget"):
        build(missing, config, latency_budget=5)  # a misspelt option is not silently ignored
    with pytest.raises(FactoryInputError, match="does not exist"):
        build(missing, config)
    assert not (tmp_path / "out").exists()


def _subparser(name: str) -> argparse.ArgumentParser:
    from factory.cli import _parser

    parser = _parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def test_the_command_line_offers_every_option_with_the_declared_choices_and_defaults() -> None:
    build_command = _subparser("build")
    actions = {a.dest: a for a in build_command._actions}
    for parameter in config_parameters():
        if parameter.group is None:
            assert parameter.name not in actions, f"{parameter.name} is Python-only"
            continue
        action = actions[parameter.name]
        assert parameter.flag in action.option_strings
        default = list(parameter.default) if isinstance(parameter.default, tuple) else parameter.default
        assert action.default == default, parameter.name
        assert parameter.help in (action.help or "")
        options = [c.options for c in parameter.constraints if isinstance(c, (StrOptions, StrSequence))]
        if options and options[0]:
            assert tuple(action.choices or ()) == options[0], parameter.name
    assert actions["learners"].default == list(DEFAULT_LEARNERS) and actions["learners"].nargs == "+"
    default_command = {a.dest for a in _subparser("build-default")._actions}
    assert {"latency_budget_us", "metric", "learners", "seed", "dormant_days"} <= default_command
    assert not {"target", "drop", "id_column", "sep"} & default_command  # the bundled job sets these


def test_command_line_values_become_the_config(tmp_path: Path) -> None:
    """What argparse parses is exactly what BuildConfig receives (same names, same types)."""
    from factory.cli import _parser

    args = _parser().parse_args(
        ["build", "--data", "t.csv", "--target", "s", "--drop", "a", "b", "--latency-budget-us", "25",
         "--learners", "lgbm", "rf", "--n-segments", "4", "--out", str(tmp_path), "--metric", "accuracy"]
    )  # fmt: skip
    options = {p.name: getattr(args, p.name) for p in config_parameters() if hasattr(args, p.name)}
    config = BuildConfig(**options)
    assert config.drop == ("a", "b") and config.learners == ("lgbm", "rf") and config.n_segments == 4
    assert config.latency_budget_us == 25.0 and config.metric == "accuracy" and config.out_dir == tmp_path
    with pytest.raises(SystemExit):
        _parser().parse_args(["build", "--data", "t.csv", "--learners", "catboost"])  # not exportable
