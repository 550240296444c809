"""The CLI's config flags are built from the library's dataclasses: choices and defaults cannot drift apart."""

import argparse
import dataclasses
import typing

import pytest

from robustprune.cli import build_parser, search_config_from_args
from robustprune.cli import recover as recover_command
from robustprune.cli._config import Flag, add_flags, build, field_default, literal_choices
from robustprune.cli.search import search_flags
from robustprune.recover import RecoverConfig
from robustprune.search import SearchConfig
from robustprune.search.engine import SEARCH_PROBES


def subparser(name: str) -> argparse.ArgumentParser:
    return next(a for a in build_parser()._actions if a.dest == "command").choices[name]


def literal_fields(cls: type, default=None, prefix: str = "") -> dict[str, tuple]:
    """{dotted path: (choices, default)} of every Literal field of ``cls``, also inside dataclass-valued fields."""
    found = {}
    for name, hint in typing.get_type_hints(cls).items():
        path = prefix + name
        value = getattr(default, name) if default is not None else field_default(cls, name)[1]
        if literal_choices(hint) is not None:
            found[path] = (literal_choices(hint), value)
        elif dataclasses.is_dataclass(value):
            found |= literal_fields(type(value), value, path + ".")
    return found


def test_every_literal_search_field_and_its_flag_agree():
    actions = {a.dest: a for a in subparser("search")._actions}
    flags = {flag.path: flag for run in search_flags() for flag in run}
    literal = literal_fields(SearchConfig)
    top_level = {path for path in literal if "." not in path}
    assert {"sampler", "importance", "rescore"} <= top_level <= set(flags)  # every top-level option has its flag
    checked = [path for path in literal if path in flags]
    assert "probes.synthetic.kind" in checked
    for path in checked:
        choices, default = literal[path]
        action = actions[flags[path].dest()]
        assert tuple(action.choices) == choices, path
        assert action.default == default, path
        assert default in choices, path


@pytest.mark.parametrize("path", ["sampler", "importance", "rescore", "probes.synthetic.kind"])
def test_the_literal_choices_are_what_the_library_accepts(path):
    choices, _ = literal_fields(SearchConfig)[path]
    for choice in choices:
        build(SearchConfig, {path: choice}, target_macs=0.5)  # no ValueError
    with pytest.raises(ValueError):
        build(SearchConfig, {path: "no-such-choice"}, target_macs=0.5)


def test_flag_defaults_are_the_config_defaults():
    args = subparser("search").parse_args(["--model", "zoo:mlp", "--target-macs", "0.5", "--out", "x"])
    assert search_config_from_args(args) == SearchConfig(target_macs=0.5)
    assert args.n_probes == SEARCH_PROBES.synthetic.n and args.probe_eps == SEARCH_PROBES.eps  # the search's probes
    args = subparser("recover").parse_args(["run", "--out", "x"])
    assert recover_command.config_from_args(args) == RecoverConfig()
    args = subparser("search").parse_args(["--model", "zoo:mlp", "--target-macs", "0.5", "--out", "x", "--recover"])
    assert recover_command.config_from_args(args, prefix="recover-") == RecoverConfig()


def test_given_flags_reach_nested_fields():
    argv = ["--model", "zoo:mlp", "--target-macs", "0.5", "--out", "x", "--probe-steps", "7", "--synthetic", "gaussian"]
    config = search_config_from_args(subparser("search").parse_args(argv + ["--probe-batch", "48"]))
    assert (config.probes.synthetic.steps, config.probes.synthetic.kind) == (7, "gaussian")
    assert config.probes.synthetic.batch_size == 48
    assert config.probes.synthetic.n == SEARCH_PROBES.synthetic.n  # not given: the default probes' value
    assert not config.split_probes
    assert search_config_from_args(subparser("search").parse_args([*argv, "--split-probes"])).split_probes
    argv = ["run", "--out", "x", "--synthesis-steps", "3", "--expand", "2"]
    config = recover_command.config_from_args(subparser("recover").parse_args(argv))
    assert (config.synthetic.steps, config.expand, config.steps) == (3, 2, RecoverConfig().steps)


def test_a_switch_needs_the_default_false():
    @dataclasses.dataclass
    class Config:
        on: bool = True

    with pytest.raises(TypeError, match="default False"):
        add_flags(argparse.ArgumentParser(), Config, [Flag("on")])


def test_optional_literal_gives_choices_and_none_default():
    @dataclasses.dataclass
    class Config:
        mode: typing.Literal["a", "b"] | None = None

    parser = argparse.ArgumentParser()
    add_flags(parser, Config, [Flag("mode")])
    assert parser.parse_args([]).mode is None and parser.parse_args(["--mode", "b"]).mode == "b"
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "c"])
