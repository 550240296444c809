"""What the commands share: the usage error (exit 2), argument types, the common flags, checks made before any
work, and loading the model a command names."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

MODEL_HELP = (
    "zoo:NAME, torchvision:NAME (with --weights), package.module:factory (with --weights), a TorchScript file, "
    "a torch.export program (.pt2) or a run folder (pruned, or int8 from quantize)"
)
PRUNE_MODEL_HELP = (
    "the original model: zoo:NAME, torchvision:NAME (with --weights), package.module:factory (with --weights) "
    "or a torch.export program (.pt2); a TorchScript file or a run folder cannot be pruned"
)
OVERWRITE_HELP = (
    "write into a folder that holds other files or another kind of run: robustprune's own files are "
    "replaced, all others are kept"
)
DATA_ROOT_HELP = "folder with the Fashion-MNIST IDX .gz files"
RUN_FILES = ("spec.json", "pruned.pt")
#: --data / --ood pixels up to this size are read once and held for the report; larger ones are read twice.
KEEP_DATA_BYTES = 1 << 30


class UsageError(Exception):
    """Bad input from the user: reported in one line with exit code 2."""


# --- argument types ------------------------------------------------------------------------------


def _number(text: str, kind=float):
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None


def fraction(text: str) -> float:
    value = _number(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1) of the original to keep, got {value}")
    return value


def _unit_interval(text: str, what: str) -> float:
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{what}, got {value}")
    return value


def share(text: str) -> float:
    return _unit_interval(text, "must be a share in [0, 1]")


def eps(text: str) -> float:
    return _unit_interval(text, "an L-inf radius in [0, 1] pixel space")


def feature_layers(text: str) -> str | tuple[str, ...]:
    """``auto``, ``none`` or a comma list of module names (RecoverConfig.features)."""
    if text in ("auto", "none"):
        return text
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"takes auto, none or a comma list of module names, got {text!r}")
    return names


def count_or_zero(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def nonnegative_float(text: str) -> float:
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- common flags --------------------------------------------------------------------------------


def add_model_args(p: argparse.ArgumentParser, allow_code: bool = False, prune: bool = False) -> None:
    """--model REF with --weights and --allow-pickle (and --allow-code)."""
    p.add_argument("--model", required=True, help=PRUNE_MODEL_HELP if prune else MODEL_HELP)
    p.add_argument("--weights", help="state dict for the model (loaded with weights_only=True)")
    p.add_argument("--allow-pickle", action="store_true", help="allow full pickles in --weights (trusted files only)")
    if allow_code:
        p.add_argument("--allow-code", action="store_true", help="let a run folder's package.module:factory run")


def add_original_args(p: argparse.ArgumentParser, original_help: str) -> None:
    """The unpruned model of a run folder: --original with --weights, --allow-pickle, --allow-code."""
    p.add_argument("--original", help=original_help)
    p.add_argument("--weights", help="state dict for --original (loaded with weights_only=True)")
    p.add_argument("--allow-pickle", action="store_true", help="allow full pickles in --weights")
    p.add_argument("--allow-code", action="store_true", help="let the run folder's package.module:factory run")


def add_exclude_arg(p: argparse.ArgumentParser) -> None:
    """``--exclude``: module names whose channels stay whole, as ``exclude=[...]`` in the API."""
    p.add_argument(
        "--exclude",
        nargs="+",
        default=[],
        metavar="MODULE",
        help="module names whose channels (their whole group) stay unpruned; a model the prune space refuses "
        "names the module to exclude",
    )


def check_exclude(model, names: list[str]) -> tuple[str, ...]:
    """``--exclude``'s names, each a module of ``model``; a UsageError naming the ones that are not."""
    modules = {name for name, _ in model.named_modules()}
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise UsageError(f"--exclude: no module named {', '.join(unknown)} in the model (see its named_modules())")
    return tuple(names)


def add_input_spec_args(p: argparse.ArgumentParser) -> None:
    """--spec FILE or --input-shape/--num-classes/--mean/--std/--value-range: the input spec of a model that
    carries none (zoo and run folders carry theirs)."""
    g = p.add_argument_group("input spec (for a model that carries none; docs/api.md)")
    g.add_argument("--spec", dest="spec_file", metavar="FILE", help="input spec JSON: shape, mean, std, num_classes")
    g.add_argument(
        "--input-shape", metavar="C,H,W", help="shape of one input, e.g. 3,32,32 (C,T,H,W for video: 3,16,112,112)"
    )
    g.add_argument("--num-classes", type=positive_int, metavar="N", help="classes the model outputs")
    g.add_argument("--mean", metavar="M[,M..]", help="per-channel mean the model normalizes with (default 0)")
    g.add_argument("--std", metavar="S[,S..]", help="per-channel std the model normalizes with (default 1)")
    g.add_argument("--value-range", metavar="LO,HI", help="pixel range of the data (default 0,1)")


def add_eval_data_args(p: argparse.ArgumentParser) -> None:
    """--data / --ood: evaluate on the user's own data instead of Fashion-MNIST."""
    p.add_argument(
        "--data",
        metavar="PATH",
        help="your evaluation data: an image folder (one subfolder per class) or an .npz/.pt file of x "
        "(N, *input shape, pixels) and y (optional); default Fashion-MNIST",
    )
    p.add_argument("--ood", metavar="PATH", help="out-of-distribution inputs for OOD AUROC (with --data)")


def add_run_out_args(p: argparse.ArgumentParser, out_help: str) -> None:
    """--out RUN_FOLDER and --overwrite."""
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def add_source_run_args(p: argparse.ArgumentParser, run_help: str, out_help: str, original_help: str) -> None:
    """A command that makes a new run folder from a run folder: RUN, --out, --overwrite and the original model."""
    p.add_argument("run", help=run_help)
    add_run_out_args(p, out_help)
    add_original_args(p, original_help)


def add_device_arg(p: argparse.ArgumentParser, help_text: str = "cpu or cuda") -> None:
    p.add_argument("--device", default="cpu", help=help_text)


def add_report_args(p: argparse.ArgumentParser, eps_help: str = "L-inf radius of the evaluation's attacks") -> None:
    """How a new run folder is evaluated and reported: --data-root, --no-eval, --eps, --json, --quiet."""
    from robustprune.cli._config import Flag, add_flags
    from robustprune.evaluate.harness import EvalSettings

    p.add_argument("--data-root", help=DATA_ROOT_HELP)
    p.add_argument("--no-eval", action="store_true", help="skip the real-data evaluation (cost only)")
    add_flags(p, EvalSettings, [Flag("eps", type=eps, help=eps_help + " (default %(default)s)")])
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true")


# --- input spec ----------------------------------------------------------------------------------


def _numbers(flag: str, text: str, kind=float) -> tuple:
    try:
        values = tuple(kind(v) for v in text.split(","))
    except ValueError:
        what = "integers" if kind is int else "numbers"
        raise UsageError(f"{flag} takes comma-separated {what}, got {text!r}") from None
    return values


def input_spec_from_args(args: argparse.Namespace):
    """The InputSpec the spec flags give, or None when none is given. --input-shape and --num-classes are needed
    together; --mean/--std default to 0/1 (inputs fed as they are) and --value-range to 0,1."""
    from robustprune.spec import InputSpec, SpecError, load_spec_file

    flags = {
        "--input-shape": getattr(args, "input_shape", None),
        "--num-classes": getattr(args, "num_classes", None),
        "--mean": getattr(args, "mean", None),
        "--std": getattr(args, "std", None),
        "--value-range": getattr(args, "value_range", None),
    }
    given = [flag for flag, value in flags.items() if value is not None]
    if getattr(args, "spec_file", None):
        if given:
            raise UsageError(f"give --spec FILE or the spec flags, not both ({', '.join(given)})")
        return load_spec_file(args.spec_file)
    if not given:
        return None
    missing = [flag for flag in ("--input-shape", "--num-classes") if flags[flag] is None]
    if missing:
        raise UsageError(f"{', '.join(given)} also need {' and '.join(missing)}")
    value_range = _numbers("--value-range", args.value_range) if args.value_range else (0.0, 1.0)
    if len(value_range) != 2:
        raise UsageError(f"--value-range takes LO,HI, got {args.value_range!r}")
    try:
        return InputSpec(
            shape=_numbers("--input-shape", args.input_shape, int),
            mean=_numbers("--mean", args.mean) if args.mean else (0.0,),
            std=_numbers("--std", args.std) if args.std else (1.0,),
            num_classes=args.num_classes,
            value_range=value_range,
        )
    except SpecError as exc:  # the same checks as InputSpec's, named by flag
        message = str(exc).replace("InputSpec.value_range", "--value-range").replace("InputSpec.shape", "--input-shape")
        raise UsageError(message.replace("InputSpec.mean", "--mean").replace("InputSpec.std", "--std")) from None


# --- checks before the work ----------------------------------------------------------------------


def check_output_path(path: str) -> Path:
    from robustprune._io import check_writable_file

    return check_writable_file(path)


def check_run_dir(args: argparse.Namespace, kind: str | tuple[str, ...]) -> Path:
    """The run folder ``--out``: creatable, really writable, and empty or holding a run of this kind
    (anything else needs --overwrite); held by this command until it ends, so no other process writes it."""
    from robustprune._io import check_run_folder, run_folder_claim

    stack = getattr(args, "exit_stack", None)  # main() gives each command one; callers of run() may not
    if stack is not None and not stack.enter_context(run_folder_claim(args.out)):
        raise UsageError(f"another robustprune process is writing {args.out}; wait for it or choose another --out")
    return check_run_folder(args.out, kind, overwrite=getattr(args, "overwrite", False))


def check_run_parent(out: Path) -> None:
    """``out`` (a folder) exists and is writable, or can be made in an existing writable folder."""
    from robustprune._io import check_writable_file

    check_writable_file(out / ".probe" if out.is_dir() else out)


def check_folder_flag(flag: str, path: str | None) -> None:
    """A folder flag (``--checkpoint-dir``): a folder, or creatable and writable, checked before any work."""
    from robustprune._io import _probe_writable

    if path is None:
        return
    target = Path(path).absolute()
    existing = next(p for p in (target, *target.parents) if p.exists())  # missing folders above it are made too
    if not existing.is_dir():
        raise UsageError(f"{flag} {path}: {existing} is a file; it takes a folder")
    try:
        _probe_writable(existing)
    except ValueError as exc:
        raise UsageError(f"{flag} {path}: {exc}") from None


def check_run_source(folder: Path) -> None:
    """``folder`` is a run folder: it holds spec.json and pruned.pt."""
    missing = [name for name in RUN_FILES if not (folder / name).is_file()]
    if missing:
        raise UsageError(f"{folder} is not a run folder (no {' or '.join(missing)})")


def load_original(args: argparse.Namespace, source: Path, data: dict, spec):
    """The unpruned model a run folder was pruned from: --original, else the reference its spec.json records
    (library references load as they are; user code needs --original or --allow-code), with the run's spec."""
    from robustprune.models import is_library_ref, load_model
    from robustprune.probes.cache import weights_hash

    reference = args.original or data.get("model")
    if not reference:
        raise UsageError(f"{source}/spec.json names no original model: give --original (and --weights)")
    if not is_library_ref(reference) and not (args.allow_code or args.original):
        raise UsageError(f"the original {reference!r} is user code: give --original explicitly or --allow-code")
    original, _ = load_model(reference, weights=args.weights, spec=spec, allow_pickle=args.allow_pickle)
    recorded = data.get("original_sha256")  # folders written before it was recorded are not checked
    if recorded is not None and weights_hash(original) != recorded:
        given = f"{reference}" + (f" with --weights {args.weights}" if args.weights else "")
        raise UsageError(
            f"{given} is not the model {source} was pruned from (its weights differ): give the original's "
            "--original/--weights"
        )
    return reference, original


def open_source_run(args: argparse.Namespace, kind: str):
    """(source, out, pruned model, spec, spec.json data) of a command that reads run folder RUN and writes a
    ``kind`` run to --out; both folders and the evaluation data are checked first."""
    from robustprune.structure import load_pruned

    source = Path(args.run)
    check_run_source(source)
    if Path(args.out).resolve() == source.resolve():
        raise UsageError(f"--out {args.out} is the run folder being read; choose another --out")
    out = check_run_dir(args, kind)
    check_eval_data(args)
    pruned, spec, data = load_pruned(source, allow_pickle=args.allow_pickle, trust_code=args.allow_code)
    check_user_data(args, spec)  # a bad --data fails now, not after the recovery or calibration
    return source, out, pruned, spec, data


def check_device(device: str | None) -> None:
    from robustprune.models import check_device as check

    if device is None:
        return
    try:
        check(device)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def check_storage(url: str | None) -> None:
    """Connect to the Optuna storage once, before any synthesis (a typo must not cost a search)."""
    if url is None:
        return
    from robustprune.search.journal import journal_path
    from robustprune.search.storage import StorageError, _describe, open_storage

    shown = _describe(url)  # no password in a message
    path = journal_path(url)
    if path is not None:
        if not path or not Path(path).resolve().parent.is_dir():
            raise UsageError(f"--storage {shown!r}: no folder for the journal file {path!r}")
        if Path(path).exists():
            try:
                open_storage(url)  # replays the file: a folder or another kind of file fails here, in one line
            except StorageError as exc:
                raise UsageError(str(exc)) from None
        return
    import sqlalchemy

    from robustprune.search.storage import database_url

    try:
        engine = sqlalchemy.create_engine(database_url(url))
    except ImportError as exc:  # a database driver that is not installed
        hint = " (pip install 'robustprune[distributed]')" if "psycopg" in str(exc) else ""
        raise UsageError(f"--storage {shown!r} needs a driver that is not installed: {exc}{hint}") from None
    except Exception as exc:  # ArgumentError, NoSuchModuleError, ...
        raise UsageError(
            f"--storage {shown!r} is not a storage URL such as sqlite:///search.db, postgresql://... "
            f"or journal:FILE ({exc})"
        ) from None
    try:
        with engine.connect():
            pass
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise UsageError(f"--storage {shown!r}: cannot connect ({reason})") from None
    finally:
        engine.dispose()


def check_eval_data(args: argparse.Namespace, required: bool = False) -> None:
    """Read the evaluation data once before the expensive work: a corrupt file fails now, not after the search.
    Missing data is an error only when ``required`` (elsewhere the report is cost only)."""
    from robustprune.data.fashion_mnist import check_fashion_mnist, fashion_mnist_available

    if getattr(args, "no_eval", False):
        return
    root = getattr(args, "data_root", None)
    if required or fashion_mnist_available(root):
        check_fashion_mnist("test", root)


def check_user_data(args: argparse.Namespace, spec) -> None:
    """Read --data / --ood against the model's spec before any expensive work; the report uses what was read
    then (:func:`user_data_kwargs`), so a file is read once, unless it is over KEEP_DATA_BYTES."""
    from robustprune.data.user import load_user_data

    if getattr(args, "ood", None) and not getattr(args, "data", None):
        raise UsageError("--ood needs --data (Fashion-MNIST brings its own OOD sets)")
    if getattr(args, "data", None) and getattr(args, "data_root", None):
        raise UsageError("--data-root locates Fashion-MNIST; with --data (your own data) it would be ignored: drop one")
    if getattr(args, "no_eval", False):
        return
    args.user_data = args.user_ood = None
    if getattr(args, "data", None):
        x, y = load_user_data(args.data, spec, quiet=getattr(args, "quiet", False))
        args.user_data = (x, y) if _kept(x) else None
    if getattr(args, "ood", None):  # another dataset's labels mean nothing here
        pixels = load_user_data(args.ood, spec, labels=False, quiet=getattr(args, "quiet", False))[0]
        args.user_ood = {Path(args.ood).name: pixels} if _kept(pixels) else None


def _kept(pixels) -> bool:
    """Whether pixels read for the check are held for the report: up to KEEP_DATA_BYTES, so that a large image
    folder is read again at the end rather than held through an hours-long search."""
    return pixels.numel() * pixels.element_size() <= KEEP_DATA_BYTES


def user_data_kwargs(args: argparse.Namespace) -> dict:
    """``evaluate``'s data, data_name and ood for --data / --ood: what check_user_data read, or the paths where
    that was too large to hold through the run."""
    if not hasattr(args, "user_data"):
        raise RuntimeError("check_user_data(args, spec) must read --data before the report")  # a CLI coding error
    data = args.data if args.user_data is None else args.user_data
    ood = args.ood if args.user_ood is None else args.user_ood
    return {"data": data, "data_name": str(args.data), "ood": ood}


def load_model_from_args(args: argparse.Namespace, prune: bool = False):
    """(model, spec) of --model with its spec flags; for pruning, refuse what cannot be pruned and reloaded."""
    import torch

    from robustprune.models import load_model

    model, spec = load_model(
        args.model,
        weights=args.weights,
        spec=input_spec_from_args(args),
        allow_pickle=args.allow_pickle,
        device=getattr(args, "device", None) or "cpu",
        trust_code=getattr(args, "allow_code", False),
    )
    if prune and Path(args.model).is_dir():
        raise UsageError(f"{args.model} is a run folder; prune its original model (the folder cannot be rebuilt)")
    if prune and isinstance(model, torch.jit.ScriptModule):
        raise UsageError(
            f"{args.model} is TorchScript, which robustprune can evaluate but not prune (torch-pruning needs Python "
            "modules); give the model as package.module:factory, torchvision:NAME or a torch.export program (.pt2)"
        )
    check_user_data(args, spec)
    return model, spec


# --- Optuna's trial tracebacks -------------------------------------------------------------------


class _NoTrialTracebacks(logging.Filter):
    """Drop Optuna's report of a trial that raised: the exception reaches the CLI, which says it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None and not _FAILED_WITH_NONE.match(record.getMessage())


_FAILED_WITH_NONE = re.compile(r"Trial \d+ failed with value None\.")


def quiet_trial_failures(args: argparse.Namespace) -> None:
    """Without --debug, a Ctrl-C or a bug inside a trial prints one line, not Optuna's traceback."""
    import optuna

    if getattr(args, "debug", False):
        return
    optuna.logging.get_logger("optuna")  # makes Optuna's handler
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _NoTrialTracebacks) for f in handler.filters):
            handler.addFilter(_NoTrialTracebacks())
