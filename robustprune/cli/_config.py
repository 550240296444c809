"""argparse flags built from the library's config dataclasses: one source for names, types, choices and defaults.

A :class:`Flag` names a field by its path in a dataclass ("trials", "probes.synthetic.n"); its default is the
dataclass's (a ``default_factory`` value is followed into, so "probes.eps" is ``SEARCH_PROBES.eps``), a ``Literal``
type gives the choices, ``bool`` a store_true switch. Only the help text (and a stricter parser) is the CLI's own.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Flag:
    """A command-line flag for the dataclass field at ``path``: --PREFIX``flag``, ``flag`` by default the last part
    of the path with dashes."""

    path: str
    flag: str | None = None
    help: str | None = None
    type: Callable[[str], Any] | None = None  # the argparse parser; default: the field's int / float / str

    def name(self, prefix: str = "") -> str:
        return "--" + prefix + (self.flag or self.path.rsplit(".", 1)[-1].replace("_", "-"))

    def dest(self, prefix: str = "") -> str:
        return self.name(prefix).removeprefix("--").replace("-", "_")


def field_default(cls: type, path: str) -> tuple[Any, Any]:
    """(type, default) of the field at dotted ``path`` of dataclass ``cls``; inner defaults are read from the
    outer default's value (a config's default probes, not the probe class's defaults)."""
    owner, value, found = cls, None, False
    for name in path.split("."):
        hint = typing.get_type_hints(owner)[name]
        if found:
            value = getattr(value, name)
        else:
            field = {f.name: f for f in dataclasses.fields(owner)}[name]
            value = field.default_factory() if field.default is dataclasses.MISSING else field.default
            found = True
        owner = type(value)
    return hint, value


def param_default(func: Callable, name: str) -> Any:
    """The default of parameter ``name`` of ``func`` (a library function's default, read rather than copied)."""
    return inspect.signature(func).parameters[name].default


def literal_choices(hint: Any) -> tuple | None:
    """The values of a ``Literal`` type (also inside ``X | None``), else None."""
    hint = _without_none(hint)
    return typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else None


def _without_none(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def argparse_options(cls: type, flag: Flag) -> dict[str, Any]:
    """The add_argument keywords of ``flag``: default, choices or store_true, type, help."""
    hint, default = field_default(cls, flag.path)
    options: dict[str, Any] = {"default": default, "help": flag.help}
    choices = literal_choices(hint)
    base = _without_none(hint)
    if choices is not None:
        options["choices"] = choices
    elif base is bool:
        if default is not False:
            raise TypeError(f"{cls.__name__}.{flag.path}: a store_true flag needs the default False")
        options["action"] = "store_true"
    elif flag.type is not None or base in (int, float):
        options["type"] = flag.type or base
    return options


def add_flags(parser: argparse.ArgumentParser | Any, cls: type, flags: Iterable[Flag], prefix: str = "") -> None:
    """Add ``flags`` of dataclass ``cls`` to ``parser`` (or an argument group); ``prefix`` goes before the names."""
    for flag in flags:
        parser.add_argument(flag.name(prefix), dest=flag.dest(prefix), **argparse_options(cls, flag))


def values(args: argparse.Namespace, flags: Iterable[Flag], prefix: str = "") -> dict[str, Any]:
    """{path: value} of ``flags`` in parsed ``args``."""
    return {flag.path: getattr(args, flag.dest(prefix)) for flag in flags}


def changed(args: argparse.Namespace, cls: type, flags: Iterable[Flag], prefix: str = "") -> list[str]:
    """The names of ``flags`` whose parsed value differs from its default: what the user gave."""
    return [f.name(prefix) for f in flags if getattr(args, f.dest(prefix)) != field_default(cls, f.path)[1]]


def build(cls: type, given: dict[str, Any], **fields: Any) -> Any:
    """``cls(**fields, ...)`` with the dotted ``given`` values: an inner path replaces that field of the outer
    field's default (``dataclasses.replace``), so what is not given keeps the library's default."""
    here, nested = _split(given)
    top = {**fields, **here}
    for head, sub in nested.items():
        top[head] = _replace(top[head] if head in top else field_default(cls, head)[1], sub)
    return cls(**top)


def _replace(obj: Any, given: dict[str, Any]) -> Any:
    here, nested = _split(given)
    for head, sub in nested.items():
        here[head] = _replace(here.get(head, getattr(obj, head)), sub)
    return dataclasses.replace(obj, **here)


def _split(given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """({name: value}, {name: {inner path: value}}) of dotted paths."""
    here: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path, value in given.items():
        head, _, rest = path.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            here[head] = value
    return here, nested
