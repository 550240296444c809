"""The ``robustprune`` command line: one module per command, each with ``add_parser`` and ``run``.

Exit codes: 0 success, 1 an unexpected (internal) error (one line; the traceback with
--debug), 2 bad usage or input (one line on stderr saying why), 130 interrupted. Run
folders are checked before any work and written before the evaluation; output files are
written atomically, so Ctrl-C never leaves a half-written result.

Importing this package loads neither torch nor the library's heavy modules: ``main`` does, inside its
Ctrl-C handler, while it builds the parser.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import traceback
import warnings

from robustprune import __version__
from robustprune.cli import baseline, bench, demo, export, plot, quantize, recover, search, worker, zoo
from robustprune.cli import eval as eval_command
from robustprune.cli._common import UsageError, add_eval_data_args, add_input_spec_args, input_spec_from_args, one_line
from robustprune.cli._output import where_saved
from robustprune.cli.search import search_config_from_args

__all__ = [
    "UsageError",
    "add_eval_data_args",
    "add_input_spec_args",
    "build_parser",
    "input_spec_from_args",
    "main",
    "search_config_from_args",
]

#: the commands in the order ``--help`` lists them
COMMANDS = (eval_command, baseline, search, demo, recover, quantize, bench, export, plot, worker, zoo)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (the usage is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="robustprune",
        allow_abbrev=False,  # a prefix (--data for --data-root) must not silently stand for another flag
        description="Data-free, robustness-preserving structured pruning of pretrained PyTorch models.",
    )
    parser.add_argument("--version", action="version", version=f"robustprune {__version__}")
    parser.add_argument("--debug", action="store_true", help="print the full traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help_text: str, examples: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=examples,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False,
        )
        # also after the command; SUPPRESS keeps the global flag's value when it is not repeated here
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        return p

    for command in COMMANDS:
        command.add_parser(add)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input (exit 2, one line). Anything else is a bug (exit 1)."""
    from robustprune._io import RunFolderError
    from robustprune.bench import SuiteError
    from robustprune.data.fashion_mnist import DataError, DataNotFoundError
    from robustprune.deploy import DeployError
    from robustprune.models import ModelRefError
    from robustprune.quantize.ptq import QuantizeError
    from robustprune.recover.checkpoint import CheckpointMismatchError
    from robustprune.recover.features import FeatureLayerError
    from robustprune.recover.run import RecoveryDivergedError
    from robustprune.search.storage import StorageError
    from robustprune.spec import SpecError
    from robustprune.structure.space import UnsupportedModelError
    from robustprune.targets import UnreachableTargetError

    return (
        UsageError,
        RunFolderError,
        SuiteError,
        DataError,
        DataNotFoundError,
        ModelRefError,
        StorageError,
        DeployError,
        SpecError,
        UnsupportedModelError,
        UnreachableTargetError,
        QuantizeError,
        CheckpointMismatchError,
        FeatureLayerError,
        RecoveryDivergedError,
    )


def _storage_failure(exc: BaseException) -> str | None:
    """The database error behind ``exc`` (its cause or context chain), in one line; None if there is none.
    Optuna sometimes hides it behind an error of its own (an UnboundLocalError in its trial loop)."""
    import optuna

    try:
        import sqlalchemy.exc
    except ImportError:
        return None
    seen, masked = set(), None
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
            return one_line(exc.orig if getattr(exc, "orig", None) is not None else exc)
        if isinstance(exc, optuna.exceptions.StorageInternalError) and masked is None:
            masked = one_line(exc)  # Optuna's own wording, when no database error lies behind it
        exc = exc.__cause__ or exc.__context__
    return masked


def _run(args: argparse.Namespace) -> int:
    try:
        with contextlib.ExitStack() as args.exit_stack:  # what the command holds until it ends (its --out's claim)
            return args.func(args)
    except KeyboardInterrupt:
        print(f"robustprune {args.command}: interrupted{where_saved(args)}", file=sys.stderr)
        return 130
    except Exception as exc:
        if isinstance(exc, _user_errors()):
            print(f"robustprune {args.command}: error: {one_line(exc)}{where_saved(args)}", file=sys.stderr)
            return 2
        lost = _storage_failure(exc)
        if lost is not None:  # the database went away (a restart, the network): not a bug, and resumable
            print(
                f"robustprune {args.command}: error: lost the connection to the storage ({lost}); rerun the same "
                f"command to resume{where_saved(args)}",
                file=sys.stderr,
            )
            return 2
        if getattr(args, "debug", False):
            traceback.print_exc()
        hint = "" if getattr(args, "debug", False) else " (rerun with --debug for the traceback)"
        print(
            f"robustprune {args.command}: internal error: {type(exc).__name__}: {one_line(exc)}"
            f"{where_saved(args)}{hint}",
            file=sys.stderr,
        )
        return 1


def _current_folder_importable() -> None:
    """``--model mymodule:build`` finds mymodule.py in the current folder, from the ``robustprune`` script as
    from ``python -m robustprune`` (which puts that folder first); here it goes last, so no file there shadows
    an installed package."""
    here = os.getcwd()
    if "" not in sys.path and not any(os.path.abspath(p) == here for p in sys.path if p):
        sys.path.append(here)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line on stderr, as the CLI's errors are (--debug shows Python's own form)."""
    kind = "" if category is UserWarning else f" ({category.__name__})"  # another library's warnings keep their kind
    print(f"robustprune: warning{kind}: {one_line(message)}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 success, 1 an unexpected (internal) error, 2 bad usage or input, 130 interrupted."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in the run's report.json
        if args.command is None:
            parser.print_help()
            return 2
        _current_folder_importable()
        with warnings.catch_warnings():
            if not args.debug:
                warnings.showwarning = _one_line_warning
            code = _run(args)
    except KeyboardInterrupt:  # while the heavy modules are imported or the parser is built
        print("robustprune: interrupted", file=sys.stderr)
        code = 130
    if code == 130 and argv is None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C while exiting prints no traceback
    return code
