"""The ``robustprune`` command line.

Exit codes: 0 success, 1 an unexpected (internal) error (one line; the traceback with
--debug), 2 bad usage or input (one line on stderr saying why), 130 interrupted. Run
folders are checked before any work and written before the evaluation; output files are
written atomically, so Ctrl-C never leaves a half-written result.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import signal
import sys
import traceback
from pathlib import Path

from robustprune import __version__

EXAMPLES = {
    "eval": """examples:
  robustprune eval --model zoo:resnet20
  robustprune eval --model zoo:cnn --json cnn.json --quiet
  robustprune eval --model mypkg.nets:build --weights net.pt --json out.json
  robustprune eval --model traced.ts --eps 0.05 --n-attack 2000
  robustprune eval --model torchvision:resnet18 --weights r18.pt --input-shape 3,32,32 --num-classes 10 \\
      --mean 0.49,0.48,0.45 --std 0.25,0.24,0.26 --data cifar_test/
  robustprune eval --model runs/mine --data unlabeled.npz --original mypkg.nets:build --original-weights net.pt
  robustprune eval --model runs/r20-int8          # a run folder: pruned, or int8 from quantize""",
    "baseline": """examples:
  robustprune baseline --model zoo:resnet20 --method l1_uniform --target-macs 0.5 --out runs/r20-l1
  robustprune baseline --model zoo:mlp --method paoding --target-params 0.5 --out runs/mlp-paoding
  robustprune baseline --model zoo:cnn --method global_magnitude --target-macs 0.7 --no-eval --out runs/cnn-gm""",
    "search": """examples:
  robustprune search --model zoo:resnet20 --target-macs 0.5 --out runs/r20
  robustprune search --model zoo:mlp --target-params 0.5 --sampler cmaes --seed 1 --out runs/mlp
  robustprune search --model zoo:cnn --target-macs 0.7 --storage sqlite:///cnn.db --out runs/cnn   # resumable
  robustprune search --model zoo:cnn --target-macs 0.5 --sampler nsga2 --floor fidelity=0.9 --out runs/cnn-mo
  robustprune search --model mypkg.nets:build --weights net.pt --spec net_spec.json --target-macs 0.5 --out runs/net
  robustprune search --model zoo:resnet20 --target-macs 0.5 --storage postgresql://u:pw@db/rp --out runs/r20
      # coordinator: `robustprune worker --storage postgresql://u:pw@db/rp` on other machines adds trials
  robustprune search --model zoo:resnet20 --target-macs 0.5 --round-to 8 --out runs/r20-r8
  robustprune search --model zoo:resnet20 --target-latency 0.5 --latency-batch 256 --out runs/r20-lat""",
    "worker": """examples:
  robustprune worker --storage postgresql://user:password@dbhost/robustprune
  robustprune worker --storage journal:/shared/search.log --study r20
  robustprune worker --storage postgresql://u:pw@db/rp --model mypkg.nets:build --weights net.pt --allow-code""",
    "quantize": """examples:
  robustprune quantize runs/r20 --out runs/r20-int8                          # synthetic calibration, no data
  robustprune quantize runs/r20 --out runs/r20-int8-real --calibration real --n 1000""",
    "demo": """examples:
  robustprune demo                              # zoo:resnet20 to half its MACs, into runs/demo
  robustprune demo --model zoo:cnn --target-macs 0.7 --out runs/cnn-demo""",
    "recover": """examples:
  robustprune recover runs/r20 --out runs/r20-recovered                  # zoo originals load by name
  robustprune recover runs/mine --out runs/mine-rec --original mypkg.nets:build --weights net.pt --allow-code
  robustprune recover runs/r20 --out runs/r20-rec --checkpoint-dir ckpt   # rerun the same line to resume""",
    "bench": """examples:
  robustprune bench --suite quick --out runs/bench-quick
  robustprune bench --suite full --out results/full          # hours; rerun to resume
  robustprune bench --suite my_suite.json --out runs/mine""",
    "export": """examples:
  robustprune export runs/r20 --format torchscript --out r20.ts
  robustprune export runs/r20 --format torch-export --out r20.pt2
  robustprune export --spec runs/r20/spec.json --weights runs/r20/pruned.pt --out r20_state.pt""",
    "plot": """examples:
  robustprune plot runs/r20                      # redraw runs/r20/plots
  robustprune plot runs/r20-tpe runs/r20-cmaes --out compare   # fronts of several runs on one figure""",
    "zoo": """examples:
  robustprune zoo
  robustprune zoo --json""",
}


DEMO_OUT = "runs/demo"
MODEL_HELP = (
    "zoo:NAME, torchvision:NAME (with --weights), package.module:factory (with --weights), a TorchScript file, "
    "a torch.export program (.pt2) or a run folder (pruned, or int8 from quantize)"
)


class UsageError(Exception):
    """Bad input from the user: reported in one line with exit code 2."""


def _check_output_path(path: str) -> Path:
    from robustprune._io import check_writable_file

    return check_writable_file(path)


def _check_run_dir(args: argparse.Namespace, kind: str) -> Path:
    """The run folder ``--out``: creatable, really writable, and empty or holding a run of this kind
    (anything else needs --overwrite)."""
    from robustprune._io import check_run_folder

    return check_run_folder(args.out, kind, overwrite=getattr(args, "overwrite", False))


def _check_device(device: str | None) -> None:
    from robustprune.models import check_device

    if device is None:
        return
    try:
        check_device(device)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _check_storage(url: str | None) -> None:
    """Connect to the Optuna storage once, before any synthesis (a typo must not cost a search)."""
    if url is None:
        return
    from robustprune.search.journal import journal_path

    path = journal_path(url)
    if path is not None:
        if not path or not Path(path).resolve().parent.is_dir():
            raise UsageError(f"--storage {url!r}: no folder for the journal file {path!r}")
        return
    import sqlalchemy

    from robustprune.search.storage import database_url

    try:
        engine = sqlalchemy.create_engine(database_url(url))
    except ImportError as exc:  # a database driver that is not installed
        hint = " (pip install 'robustprune[distributed]')" if "psycopg" in str(exc) else ""
        raise UsageError(f"--storage {url!r} needs a driver that is not installed: {exc}{hint}") from None
    except Exception as exc:  # ArgumentError, NoSuchModuleError, ...
        raise UsageError(
            f"--storage {url!r} is not a storage URL such as sqlite:///search.db, postgresql://... "
            f"or journal:FILE ({exc})"
        ) from None
    try:
        with engine.connect():
            pass
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise UsageError(f"--storage {url!r}: cannot connect ({reason})") from None
    finally:
        engine.dispose()


def _check_eval_data(args: argparse.Namespace, required: bool = False) -> None:
    """Read the evaluation data once before the expensive work: a corrupt file fails now, not after the search.
    Missing data is an error only when ``required`` (elsewhere the report is cost only)."""
    from robustprune.data.fashion_mnist import check_fashion_mnist, fashion_mnist_available

    if getattr(args, "no_eval", False):
        return
    root = getattr(args, "data_root", None)
    if required or fashion_mnist_available(root):
        check_fashion_mnist("test", root)


class _NoTrialTracebacks(logging.Filter):
    """Drop Optuna's report of a trial that raised: the exception reaches the CLI, which says it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None and not _FAILED_WITH_NONE.match(record.getMessage())


_FAILED_WITH_NONE = re.compile(r"Trial \d+ failed with value None\.")


def _quiet_trial_failures(args: argparse.Namespace) -> None:
    """Without --debug, a Ctrl-C or a bug inside a trial prints one line, not Optuna's traceback."""
    import optuna

    if getattr(args, "debug", False):
        return
    optuna.logging.get_logger("optuna")  # makes Optuna's handler
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _NoTrialTracebacks) for f in handler.filters):
            handler.addFilter(_NoTrialTracebacks())


def _save_run(args: argparse.Namespace, out: Path, write) -> None:
    """Write the run's files (all but report.json) into ``out`` together, before the evaluation:
    a failed or interrupted evaluation then still leaves the pruned model."""
    from robustprune._io import OWNED_FILES, staged_directory

    with staged_directory(out, owned=OWNED_FILES) as staging:
        write(staging)
    args.saved_run = out


def _finish_run(args: argparse.Namespace, out: Path, name: str, report: dict, files: str) -> int:
    """Add report.json to the written run folder and print the report (JSON, a table, or nothing)."""
    from robustprune._io import atomic_write_json
    from robustprune.evaluate.harness import format_table

    atomic_write_json(out / "report.json", report)
    if args.json:
        print(json.dumps(report, indent=2))
    elif not args.quiet:
        print(format_table({name: report}))
        print(f"wrote {out}/{files}")
    return 0


def add_input_spec_args(p: argparse.ArgumentParser) -> None:
    """--spec FILE or --input-shape/--num-classes/--mean/--std/--value-range: the input spec of a model that
    carries none (zoo and run folders carry theirs)."""
    g = p.add_argument_group("input spec (for a model that carries none; docs/api.md)")
    g.add_argument("--spec", dest="spec_file", metavar="FILE", help="input spec JSON: shape, mean, std, num_classes")
    g.add_argument("--input-shape", metavar="C,H,W", help="shape of one input, e.g. 3,32,32")
    g.add_argument("--num-classes", type=_positive_int, metavar="N", help="classes the model outputs")
    g.add_argument("--mean", metavar="M[,M..]", help="per-channel mean the model normalizes with (default 0)")
    g.add_argument("--std", metavar="S[,S..]", help="per-channel std the model normalizes with (default 1)")
    g.add_argument("--value-range", metavar="LO,HI", help="pixel range of the data (default 0,1)")


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


def add_eval_data_args(p: argparse.ArgumentParser) -> None:
    """--data / --ood: evaluate on the user's own data instead of Fashion-MNIST."""
    p.add_argument(
        "--data",
        metavar="PATH",
        help="your evaluation data: an image folder (one subfolder per class) or an .npz/.pt file of x (N,C,H,W "
        "pixels) and y (optional); default Fashion-MNIST",
    )
    p.add_argument("--ood", metavar="PATH", help="out-of-distribution inputs for OOD AUROC (with --data)")


def _load_model_from_args(args: argparse.Namespace, prune: bool = False):
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
    _check_user_data(args, spec)
    return model, spec


def _check_user_data(args: argparse.Namespace, spec) -> None:
    """Read --data / --ood once against the model's spec, before any expensive work."""
    from robustprune.data.user import load_user_data

    if getattr(args, "ood", None) and not getattr(args, "data", None):
        raise UsageError("--ood needs --data (Fashion-MNIST brings its own OOD sets)")
    for path in (getattr(args, "data", None), getattr(args, "ood", None)):
        if path and not getattr(args, "no_eval", False):
            load_user_data(path, spec)


def _cmd_eval(args: argparse.Namespace) -> int:
    from robustprune._io import atomic_write_json
    from robustprune.evaluate.harness import EvalSettings, evaluate, format_report
    from robustprune.models import load_model

    out = _check_output_path(args.json) if args.json else None
    try:
        settings = EvalSettings(
            eps=args.eps,
            pgd_steps=args.pgd_steps,
            n_attack=args.n_attack,
            n_corruption=args.n_corruption,
            seed=args.seed,
            latency=not args.no_latency,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    _check_device(args.device)
    if args.original_weights and not args.original:
        raise UsageError("--original-weights needs --original REF")
    if args.original and not args.data:
        raise UsageError("--original is for --data (agreement on your own data)")
    if not args.data:
        _check_eval_data(args, required=True)
    if Path(args.model).is_dir() and _is_int8_run(args.model):  # int8 from quantize: its exported program
        model, spec = _load_run_folder(args)
        _check_user_data(args, spec)
    else:
        model, spec = _load_model_from_args(args)
    original = None
    if args.original:
        original, _ = load_model(
            args.original,
            weights=args.original_weights,
            spec=spec,
            allow_pickle=args.allow_pickle,
            device=args.device,
            trust_code=args.allow_code,
        )
    report = evaluate(
        model,
        spec,
        data=args.data or "fashion-mnist",
        root=args.data_root,
        settings=settings,
        device=args.device,
        model_ref=args.model,
        quiet=args.quiet,
        original=original,
        ood=args.ood,
    )
    if out:
        atomic_write_json(out, report)
    if not args.quiet:
        print(format_report(report, title=f"{args.model}"))
        if out:
            print(f"wrote {out}")
    return 0


def _is_int8_run(folder: str) -> bool:
    from robustprune.quantize.run import is_quantized_run

    return is_quantized_run(Path(folder))


def _load_run_folder(args: argparse.Namespace):
    """(model, spec) of a run folder given as ``eval --model``: its int8 program when it has one, else pruned.pt."""
    from robustprune.quantize.run import is_quantized_run, load_quantized_run
    from robustprune.structure import load_pruned

    folder = Path(args.model)
    if is_quantized_run(folder):
        if args.device != "cpu":
            raise UsageError("an int8 run folder is evaluated on the CPU (--device cpu)")
        model, spec, _info = load_quantized_run(folder, allow_pickle=args.allow_pickle, trust_code=args.allow_code)
        return model, spec
    if not (folder / "spec.json").is_file():
        raise UsageError(f"{folder} is a folder but not a run folder (no spec.json)")
    model, spec, _data = load_pruned(folder, allow_pickle=args.allow_pickle, trust_code=args.allow_code)
    return model.to(args.device), spec


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1) of the original to keep, got {value}")
    return value


def _eps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"an L-inf radius in [0, 1] pixel space, got {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _report_for_run(model, spec, model_ref: str, args: argparse.Namespace, original=None) -> dict:
    """Real-data metrics on --data, else on Fashion-MNIST when it is installed and fits the spec; otherwise cost
    only, saying why. With --data, ``original`` (the unpruned model) gives the agreement."""
    from robustprune.data.fashion_mnist import INSTALL_HINT, fashion_mnist_available
    from robustprune.evaluate.harness import EvalSettings, cost_only_report, evaluate

    data = getattr(args, "data", None)
    fits = tuple(spec.shape) == (1, 28, 28) and spec.num_classes == 10
    if data and not getattr(args, "no_eval", False):
        settings = EvalSettings(seed=args.seed, eps=getattr(args, "eps", EvalSettings.eps))
        return evaluate(
            model, spec, data=data, settings=settings, model_ref=model_ref, quiet=args.quiet, original=original,
            ood=getattr(args, "ood", None),
        )  # fmt: skip
    if getattr(args, "no_eval", False) or not fits or not fashion_mnist_available(args.data_root):
        reason = (
            "skipped (--no-eval)"
            if getattr(args, "no_eval", False)
            else f"Fashion-MNIST does not fit input {spec.shape} with {spec.num_classes} classes: give --data PATH"
            if not fits
            else f"Fashion-MNIST not installed: {INSTALL_HINT}"
        )
        if not args.quiet:
            print(f"real-data evaluation {reason}", file=sys.stderr)
        return cost_only_report(model, spec, reason, model_ref=model_ref)
    return evaluate(
        model,
        spec,
        root=args.data_root,
        settings=EvalSettings(seed=args.seed, eps=getattr(args, "eps", EvalSettings.eps)),
        model_ref=model_ref,
        quiet=args.quiet,
    )


def _cmd_baseline(args: argparse.Namespace) -> int:
    from robustprune._io import atomic_write_json
    from robustprune.baselines import INPUT_CRITERIA, baseline
    from robustprune.evaluate.harness import format_table
    from robustprune.models import canonical_ref

    if args.target_macs is None and args.target_params is None:
        raise UsageError("give --target-macs and/or --target-params (fraction of the original to keep)")
    if args.method == "paoding" and args.target_macs is not None and args.target_params is not None:
        raise UsageError("the paoding baseline takes one target: --target-macs or --target-params")
    if args.round_to != 1 and args.method in ("global_magnitude", "paoding"):
        raise UsageError(f"--round-to applies to the uniform baselines, not {args.method}")
    out = _check_run_dir(args, "baseline")
    _check_eval_data(args)
    model, spec = _load_model_from_args(args, prune=True)
    inputs = None
    if args.method in INPUT_CRITERIA:  # ranks channels on the search's default synthetic inputs (disk-cached)
        from robustprune.probes.cache import cached_generate
        from robustprune.search.engine import SEARCH_PROBES

        synthetic = SEARCH_PROBES.seeded(args.seed).synthetic
        progress = None if args.quiet else (lambda m: print(f"[synthesis] {m}", file=sys.stderr, flush=True))
        inputs = spec.normalize(cached_generate(model, spec, synthetic, progress=progress).pixels)
    result = baseline(
        model,
        spec,
        args.method,
        target_macs=args.target_macs,
        target_params=args.target_params,
        seed=args.seed,
        inputs=inputs,
        round_to=args.round_to,
    )
    reached = result.kept_fraction
    if not args.quiet:
        print(
            f"{args.method}: kept {100 * reached['macs']:.1f}% of MACs, {100 * reached['params']:.1f}% of params",
            file=sys.stderr,
        )
    _save_run(args, out, lambda staging: result.save(staging, model_ref=canonical_ref(args.model)))
    report = _report_for_run(result.model, spec, f"{args.model} ({args.method})", args, original=model)
    report["provenance"].update(method=args.method, target={"macs": args.target_macs, "params": args.target_params})
    atomic_write_json(out / "report.json", report)
    if args.json:
        print(json.dumps(report, indent=2))
    elif not args.quiet:
        print(format_table({args.method: report}))
        print(f"wrote {out}/pruned.pt, spec.json, report.json")
    return 0


def _parse_floors(items: list[str]) -> dict[str, float]:
    floors = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            floors[name] = float(value)
        except ValueError:
            raise UsageError(f"--floor takes PROXY=VALUE, got {item!r}") from None
        if not sep:
            raise UsageError(f"--floor takes PROXY=VALUE, got {item!r}")
    return floors


def search_config_from_args(args: argparse.Namespace):
    """The SearchConfig of ``robustprune search``: every option not given keeps the library default
    (``SearchConfig`` and ``SEARCH_PROBES``), so equal arguments give the config ``rp.search`` runs."""
    from robustprune.search import SearchConfig
    from robustprune.search.engine import SEARCH_PROBES

    if args.target_macs is None and args.target_params is None and args.target_latency is None:
        raise UsageError(
            "give --target-macs, --target-params and/or --target-latency (fraction of the original to keep)"
        )
    try:
        synthetic = dataclasses.replace(
            SEARCH_PROBES.synthetic, kind=args.synthetic, n=args.n_probes, steps=args.probe_steps
        )
        probes = dataclasses.replace(SEARCH_PROBES, synthetic=synthetic, eps=args.probe_eps, seed=args.probe_seed)
        return SearchConfig(
            target_macs=args.target_macs,
            target_params=args.target_params,
            steps=args.steps,
            trials=args.trials,
            max_increment=args.max_increment,
            sampler=args.sampler,
            multi_objective=args.multi_objective,
            importance=args.importance,
            compensation=(
                "auto" if args.compensation == "auto" else tuple(c for c in args.compensation.split(",") if c)
            ),
            floors=_parse_floors(args.floor),
            rescore=args.rescore,
            probes=probes,
            seed=args.seed,
            round_to=args.round_to,
            target_latency=args.target_latency,
            latency_batch=args.latency_batch,
            latency_threads=args.latency_threads,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _cmd_search(args: argparse.Namespace) -> int:
    from robustprune.models import canonical_ref
    from robustprune.plots import plot_run
    from robustprune.search import search

    config = search_config_from_args(args)
    recover_config = _recover_config_from_args(args, prefix="recover_") if args.recover else None
    _check_device(args.device)
    out = _check_run_dir(args, "search+recover" if args.recover else "search")
    _check_storage(args.storage)
    _check_eval_data(args)
    model, spec = _load_model_from_args(args, prune=True)
    _quiet_trial_failures(args)
    result = search(
        model, spec, config=config, storage=args.storage, study_name=args.study, quiet=args.quiet, model_ref=args.model
    )
    recovered = _recover_search(args, result, model, spec, recover_config) if args.recover else None

    def write(staging: Path) -> None:
        result.save(staging, model_ref=canonical_ref(args.model))
        plot_run(staging, staging / "plots")
        if recovered is not None:  # the recovered weights replace the search's pruned.pt
            recovered.save(staging, model_ref=canonical_ref(args.model))

    _save_run(args, out, write)
    final = recovered.model if recovered is not None else result.model
    report = _report_for_run(
        final, spec, f"{args.model} (search{' + recover' if recovered else ''})", args, original=model
    )
    report["provenance"].update(method="search", search=result.summary())
    if recovered is not None:
        report["provenance"].update(method="search+recover", stages=["search", "recover"], recover=recovered.summary())
    if config.target_latency is not None:
        report["latency_check"] = _latency_check(model, result, config, args)
    files = "pruned.pt, spec.json, history.json, front.json, report.json, plots/"
    return _finish_run(args, out, "search", report, files + (", recover.json, recover_loss.png" if recovered else ""))


def _recover_search(args: argparse.Namespace, result, model, spec, config):
    """``search --recover``: distill the search's pruned model from the original (changes its weights)."""
    from robustprune.recover import recover

    if not args.quiet:
        print("recovering the pruned model from the original on synthetic inputs", file=sys.stderr)
    return recover(
        result.model,
        model,
        spec,
        config,
        candidate=result.candidate,
        device=args.device,
        checkpoint_dir=args.recover_checkpoint_dir,
        quiet=args.quiet,
    )


def _cmd_worker(args: argparse.Namespace) -> int:
    from robustprune.search.worker import run_worker

    _check_device(args.device)
    _check_storage(args.storage)
    _quiet_trial_failures(args)
    report = run_worker(
        args.storage,
        args.study,
        model_ref=args.model,
        weights=args.weights,
        allow_code=args.allow_code,
        device=args.device,
        wait=args.wait,
        log=(lambda m: None) if args.quiet else (lambda m: print(m, flush=True)),
    )
    print(f"worker: {sum(report.trials.values())} trials in {report.seconds:.0f}s; search {report.status}")
    return 0


def _latency_check(model, result, config, args: argparse.Namespace) -> dict:
    """The latency table's prediction for the pruned model against timing it, interleaved with the original."""
    from robustprune.evaluate.lut import check_latency_model

    check = check_latency_model(model, result.space, result.candidate, result.model, config)
    if not args.quiet:
        print(
            f"latency at batch {check['batch_size']}: predicted {100 * check['predicted_fraction']:.1f}% of the "
            f"original, measured {100 * check['measured_fraction']:.1f}% (target {100 * config.target_latency:.0f}%; "
            f"table off by {100 * check['relative_error']:+.1f}%)",
            file=sys.stderr,
        )
    return check


def _cmd_demo(args: argparse.Namespace) -> int:
    from robustprune._io import atomic_write_json
    from robustprune.data.fashion_mnist import INSTALL_HINT, fashion_mnist_available
    from robustprune.evaluate.harness import format_table
    from robustprune.models import load_model
    from robustprune.plots import plot_run
    from robustprune.search import SearchConfig, search

    try:
        config = SearchConfig(target_macs=args.target_macs, trials=args.trials, seed=args.seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.out == DEMO_OUT:
        Path(DEMO_OUT).parent.mkdir(exist_ok=True)  # the default lives in ./runs, made on first use
    out = _check_run_dir(args, "demo")
    _check_eval_data(args)
    model, spec = load_model(args.model)
    has_data = fashion_mnist_available(args.data_root)
    print(
        f"robustprune demo: {args.model} -> at most {100 * args.target_macs:.0f}% of its MACs, no data used for "
        "pruning",
        file=sys.stderr,
    )
    before = _report_for_run(model, spec, args.model, args)
    _quiet_trial_failures(args)
    result = search(model, spec, config=config, quiet=args.quiet)

    def write(staging: Path) -> None:
        result.save(staging, model_ref=args.model)
        atomic_write_json(staging / "original.json", before)
        plot_run(staging, staging / "plots")

    _save_run(args, out, write)
    after = _report_for_run(result.model, spec, f"{args.model} (search)", args)
    after["provenance"].update(method="search", search=result.summary())
    atomic_write_json(out / "report.json", after)
    print()
    print(format_table({"original": before, "pruned": after}))
    if not has_data:
        last = result.history[-1].proxies if result.history else {}
        print(
            "\nFashion-MNIST is not installed, so the table has no real-data metrics; the search's proxies "
            "(agreement with the original on synthetic / adversarial inputs): "
            + ", ".join(f"{k} {v:.3f}" for k, v in last.items())
        )
        print(f"Install the data to see them: {INSTALL_HINT}")
    print(
        f"\n{result.stop_reason}; {len(result.history)} steps in {result.seconds:.0f}s. Run folder: {out} "
        "(pruned.pt, spec.json, history.json, front.json, report.json, plots/)"
    )
    return 0


def _recover_config_from_args(args: argparse.Namespace, prefix: str = ""):
    """The RecoverConfig of ``recover`` (``prefix`` "") or of ``search --recover`` (``prefix`` "recover_")."""
    from robustprune.recover import RecoverConfig

    names = ("steps", "batch_size", "pool_size", "expand")
    given = {name: getattr(args, prefix + name) for name in names} | {"seed": args.seed}
    options = {k: v for k, v in given.items() if v is not None}
    if getattr(args, prefix + "synthesis_steps") is not None:
        from robustprune.probes.synthetic import SyntheticConfig

        options["synthetic"] = dataclasses.replace(SyntheticConfig(), steps=getattr(args, prefix + "synthesis_steps"))
    try:
        return RecoverConfig(**options)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _cmd_recover(args: argparse.Namespace) -> int:
    from robustprune.models import is_library_ref, load_model
    from robustprune.recover import recover
    from robustprune.structure import load_pruned

    source = Path(args.run)
    missing = [name for name in ("spec.json", "pruned.pt") if not (source / name).is_file()]
    if missing:
        raise UsageError(f"{source} is not a run folder (no {' or '.join(missing)})")
    config = _recover_config_from_args(args)
    _check_device(args.device)
    out = _check_run_dir(args, "recover")
    _check_eval_data(args)
    pruned, spec, data = load_pruned(source, allow_pickle=args.allow_pickle, trust_code=args.allow_code)
    reference = args.original or data.get("model")
    if not reference:
        raise UsageError(f"{source}/spec.json names no original model: give --original (and --weights)")
    if not is_library_ref(reference) and not (args.allow_code or args.original):
        raise UsageError(f"the original {reference!r} is user code: give --original explicitly or --allow-code")
    original, _ = load_model(reference, weights=args.weights, spec=spec, allow_pickle=args.allow_pickle)
    candidate = {name: tuple(group["keep"]) for name, group in data["groups"].items()}
    result = recover(
        pruned,
        original,
        spec,
        config,
        candidate=candidate,
        exclude=tuple(data.get("exclude", ())),
        device=args.device,
        checkpoint_dir=args.checkpoint_dir,
        quiet=args.quiet,
    )
    _save_run(args, out, lambda staging: result.save(staging, model_ref=data.get("model")))
    report = _report_for_run(result.model, spec, f"{reference} (recovered)", args, original=original)
    report["provenance"].update(method="recover", source=str(source), recover=result.summary())
    return _finish_run(
        args, out, "recovered", report, "pruned.pt, spec.json, recover.json, recover_loss.png, report.json"
    )


def _cmd_quantize(args: argparse.Namespace) -> int:
    import shutil
    import time

    from robustprune._io import atomic_write_json
    from robustprune.models import load_model
    from robustprune.quantize import quantize_int8, save_quantized
    from robustprune.quantize.run import INFO_FILE, PROGRAM_FILE, calibration_inputs, load_quantized_run
    from robustprune.structure import load_pruned

    source = Path(args.run)
    missing = [name for name in ("spec.json", "pruned.pt") if not (source / name).is_file()]
    if missing:
        raise UsageError(f"{source} is not a run folder (no {' or '.join(missing)})")
    out = _check_run_dir(args, "quantize")
    _check_eval_data(args)
    pruned, spec, data = load_pruned(source, allow_pickle=args.allow_pickle, trust_code=args.allow_code)
    original = None
    if args.calibration == "synthetic":  # the search's probes are inverted from the original's BN statistics
        reference = args.original or data.get("model")
        if not reference:
            raise UsageError(f"{source}/spec.json names no original model: give --original (and --weights)")
        if not reference.startswith("zoo:") and not (args.allow_code or args.original):
            raise UsageError(f"the original {reference!r} is user code: give --original explicitly or --allow-code")
        original, _ = load_model(reference, weights=args.weights, allow_pickle=args.allow_pickle)
    progress = None if args.quiet else (lambda m: print(f"[calibration] {m}", file=sys.stderr, flush=True))
    start = time.time()
    pixels = calibration_inputs(
        args.calibration, original, spec, n=args.n, seed=args.seed, data_root=args.data_root, progress=progress
    )
    program = quantize_int8(pruned, spec, pixels, backend=args.backend)
    info = {
        "source": str(source),
        "calibration": args.calibration,
        "n": int(pixels.shape[0]),
        "backend": args.backend,
        "seed": args.seed,
        "seconds": time.time() - start,
    }

    def write(staging: Path) -> None:
        save_quantized(program, staging / PROGRAM_FILE)
        for name in ("spec.json", "pruned.pt"):
            shutil.copyfile(source / name, staging / name)
        atomic_write_json(staging / INFO_FILE, info)

    _save_run(args, out, write)
    if not args.quiet:
        print(f"int8 ({args.backend}) calibrated on {info['n']} {args.calibration} inputs", file=sys.stderr)
    model, spec, _info = load_quantized_run(out, allow_pickle=args.allow_pickle, trust_code=args.allow_code)
    report = _report_for_run(model, spec, f"{data.get('model')} (int8, {args.calibration})", args)
    report["provenance"].update(method="quantize", quantize=info)
    return _finish_run(args, out, "int8", report, f"{PROGRAM_FILE}, pruned.pt, spec.json, {INFO_FILE}, report.json")


_QUANTIZE_N_HELP = ", ".join(f"{k} {v}" for k, v in {"synthetic": 256, "gaussian": 256, "real": 1000}.items())


def _cmd_bench(args: argparse.Namespace) -> int:
    from robustprune.bench import CellsFailed, load_suite, run_suite

    try:
        suite = load_suite(args.suite)
    except (FileNotFoundError, ValueError, KeyError, TypeError) as exc:  # the suite file is the user's input
        raise UsageError(_one_line(exc) if not isinstance(exc, KeyError) else f"suite lacks the key {exc}") from None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder")
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    _check_run_parent(out)
    for device in (args.eval_device, args.search_device):
        _check_device(device)  # before hours of cells, not in the first one
    if args.summarize_only:
        from robustprune.bench import summarize_suite

        if not summarize_suite(suite, out):
            raise UsageError(f"no finished cells of suite {suite.name!r} in {out}")
        print((out / "summary.md").read_text())
        return 0
    _check_eval_data(args, required=True)
    _quiet_trial_failures(args)
    try:
        run_suite(
            suite,
            out,
            log=(lambda m: None) if args.quiet else None,
            eval_device=args.eval_device,
            search_device=args.search_device,
            workers=args.workers,
            threads=args.threads,
        )
    except CellsFailed as exc:
        print(f"robustprune bench: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print((out / "summary.md").read_text())
        print(f"wrote {out}/results.csv, results.json, summary.md, plots/")
    return 0


def _check_run_parent(out: Path) -> None:
    """``out`` (a folder) exists and is writable, or can be made in an existing writable folder."""
    from robustprune._io import check_writable_file

    check_writable_file(out / ".probe" if out.is_dir() else out)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _cmd_export(args: argparse.Namespace) -> int:
    from robustprune._io import atomic_write_json
    from robustprune.deploy import save_model
    from robustprune.structure import load_pruned

    if args.run:
        source = Path(args.run)
    elif args.spec and args.weights:
        if Path(args.spec).parent != Path(args.weights).parent or Path(args.spec).name != "spec.json":
            raise UsageError("--spec and --weights must be spec.json and pruned.pt of one folder (or give the folder)")
        source = Path(args.spec).parent
    else:
        raise UsageError("give a run folder, or --spec spec.json --weights pruned.pt")
    missing = [name for name in ("spec.json", "pruned.pt") if not (source / name).is_file()]
    if missing:
        raise UsageError(f"{source} is not a run folder (no {' or '.join(missing)})")
    out = _check_output_path(args.out)
    model, spec, _data = load_pruned(source, allow_pickle=args.allow_pickle, trust_code=args.allow_code)
    save_model(model, spec, out, args.format)
    atomic_write_json(out.with_name(out.name + ".inputspec.json"), spec.to_dict())
    if not args.quiet:
        print(f"wrote {out} ({args.format}) and {out.name}.inputspec.json")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from robustprune.plots import plot_compare, plot_run

    for run in args.runs:
        if not (Path(run) / "history.json").is_file():
            raise UsageError(f"{run} is not a search run folder (no history.json)")
        missing = [name for name in ("front.json", "spec.json") if not (Path(run) / name).is_file()]
        if missing:
            raise UsageError(f"{run} is an incomplete search run folder (no {' or '.join(missing)})")
    if len(args.runs) == 1:
        if args.out:
            _check_run_parent(Path(args.out))
        written = plot_run(args.runs[0], args.out)
    else:
        out = Path(args.out or ".")
        if not out.is_dir():
            raise UsageError(f"output folder {out} does not exist")
        written = plot_compare(args.runs, out / "compare_fronts")
    if not args.quiet:
        print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _cmd_zoo(args: argparse.Namespace) -> int:
    from robustprune import zoo

    manifest = zoo.manifest()
    rows = [{"name": n, "test_accuracy": manifest.get(n, {}).get("test_accuracy")} for n in zoo.names()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            acc = f"{100 * row['test_accuracy']:.2f}%" if row["test_accuracy"] is not None else "not trained"
            print(f"zoo:{row['name']:<12} test accuracy {acc}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (the usage is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from robustprune.baselines import METHODS
    from robustprune.criteria import CRITERIA
    from robustprune.deploy import FORMATS
    from robustprune.evaluate.harness import EvalSettings
    from robustprune.probes.synthetic import KINDS
    from robustprune.proxies import PROXIES
    from robustprune.recover import RecoverConfig
    from robustprune.search import SearchConfig
    from robustprune.search.engine import RESCORE_AT_MOST, RESCORE_INPUTS, SEARCH_PROBES
    from robustprune.search.objective import COMPENSATIONS
    from robustprune.search.samplers import SAMPLERS

    search_default = {f.name: f.default for f in dataclasses.fields(SearchConfig)}  # the library's defaults
    recover_default = {f.name: f.default for f in dataclasses.fields(RecoverConfig)}
    parser = _Parser(
        prog="robustprune",
        description="Data-free, robustness-preserving structured pruning of pretrained PyTorch models.",
    )
    parser.add_argument("--version", action="version", version=f"robustprune {__version__}")
    parser.add_argument("--debug", action="store_true", help="print the full traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=EXAMPLES.get(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        # also after the command; SUPPRESS keeps the global flag's value when it is not repeated here
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        return p

    overwrite_help = (
        "write into a folder that holds other files or another kind of run: robustprune's own files are "
        "replaced, all others are kept"
    )

    p = add(
        "eval",
        "Evaluate a model on real data (Fashion-MNIST, or yours with --data): accuracy, FGSM/PGD robustness, "
        "corruptions, OOD AUROC, calibration, MACs, params, latency.",
    )
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--weights", help="state dict for the model (loaded with weights_only=True)")
    p.add_argument("--allow-pickle", action="store_true", help="allow full pickles in --weights (trusted files only)")
    p.add_argument("--allow-code", action="store_true", help="let a run folder's package.module:factory run")
    p.add_argument("--json", metavar="OUT", help="write the report as JSON to OUT")
    add_input_spec_args(p)
    add_eval_data_args(p)
    p.add_argument("--original", metavar="REF", help="the unpruned model: agreement with it on --data")
    p.add_argument("--original-weights", metavar="FILE", help="state dict for --original")
    p.add_argument("--data-root", help="folder with the Fashion-MNIST IDX .gz files")
    p.add_argument(
        "--eps",
        type=float,
        default=EvalSettings.eps,
        help="L-inf attack radius in [0,1] pixel space (default %(default)s)",
    )
    p.add_argument("--pgd-steps", type=int, default=EvalSettings.pgd_steps)
    p.add_argument(
        "--n-attack", type=int, default=EvalSettings.n_attack, help="test images attacked (fixed seeded subset)"
    )
    p.add_argument(
        "--n-corruption",
        type=int,
        default=EvalSettings.n_corruption,
        help="test images per corruption and severity",
    )
    p.add_argument("--seed", type=int, default=EvalSettings.seed)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.add_argument("--quiet", action="store_true", help="no progress or table output")
    p.set_defaults(func=_cmd_eval)

    p = add("baseline", "Prune a model one-shot with a data-free baseline method, then evaluate it.")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    add_input_spec_args(p)
    add_eval_data_args(p)
    p.add_argument("--weights", help="state dict for the model (loaded with weights_only=True)")
    p.add_argument("--allow-pickle", action="store_true", help="allow full pickles in --weights (trusted files only)")
    p.add_argument(
        "--method",
        required=True,
        choices=METHODS,
    )
    p.add_argument("--target-macs", type=_fraction, help="fraction of the original MACs to keep, e.g. 0.5")
    p.add_argument("--target-params", type=_fraction, help="fraction of the original parameters to keep")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--round-to",
        type=_positive_int,
        default=1,
        help="keep each group's channels at a multiple of N (uniform baselines; default %(default)s)",
    )
    p.add_argument("--out", required=True, help="run folder: gets pruned.pt, spec.json, report.json")
    p.add_argument("--overwrite", action="store_true", help=overwrite_help)
    p.add_argument("--data-root", help="folder with the Fashion-MNIST IDX .gz files")
    p.add_argument("--no-eval", action="store_true", help="skip the real-data evaluation (cost only)")
    p.add_argument(
        "--eps",
        type=_eps,
        default=EvalSettings.eps,
        help="L-inf radius of the evaluation's attacks (default %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_baseline)

    p = add("search", "Prune a model by the progressive, robustness-scored Optuna search (no data needed).")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    add_input_spec_args(p)
    add_eval_data_args(p)
    p.add_argument("--weights", help="state dict for the model (loaded with weights_only=True)")
    p.add_argument("--allow-pickle", action="store_true", help="allow full pickles in --weights (trusted files only)")
    p.add_argument("--target-macs", type=_fraction, help="fraction of the original MACs to keep, e.g. 0.5")
    p.add_argument("--target-params", type=_fraction, help="fraction of the original parameters to keep")
    p.add_argument("--sampler", default=search_default["sampler"], choices=SAMPLERS)
    p.add_argument("--multi-objective", action="store_true", help="fidelity and robustness as two objectives")
    p.add_argument(
        "--steps",
        type=_positive_int,
        default=search_default["steps"],
        help="progressive steps (default: one per 10%% of the cost, 5%% without BatchNorm)",
    )
    p.add_argument(
        "--trials",
        type=_positive_int,
        default=search_default["trials"],
        help="Optuna trials per step (default %(default)s)",
    )
    p.add_argument(
        "--max-increment",
        type=float,
        default=search_default["max_increment"],
        help="most a group's removed fraction may grow per step (default %(default)s)",
    )
    p.add_argument(
        "--importance",
        default=search_default["importance"],
        choices=("auto", *CRITERIA),
        help="channel ranking inside a group (default auto: with BatchNorm, taylor_l1 (the rank sum of "
        "taylor_synthetic and l1) unless one of those two scores clearly higher on the proxies; merge_saliency "
        "without)",
    )
    p.add_argument(
        "--compensation",
        default=search_default["compensation"],
        help="comma list of " + ",".join(COMPENSATIONS) + ", '' for none, or auto "
        "(default: bn with BatchNorm, merge without)",
    )
    p.add_argument(
        "--rescore",
        default=search_default["rescore"],
        choices=RESCORE_INPUTS,
        help="rank the channels again on each committed candidate (Taylor criteria only; default auto: "
        f"synthetic when the target keeps at most {100 * RESCORE_AT_MOST:.0f}%% of the cost, else off)",
    )
    p.add_argument("--synthetic", default=SEARCH_PROBES.synthetic.kind, choices=KINDS)
    p.add_argument(
        "--n-probes",
        type=_positive_int,
        default=SEARCH_PROBES.synthetic.n,
        help="synthetic probe inputs (default %(default)s)",
    )
    p.add_argument(
        "--probe-steps",
        type=_positive_int,
        default=SEARCH_PROBES.synthetic.steps,
        help="Adam steps of the synthesis (default %(default)s)",
    )
    p.add_argument(
        "--probe-eps",
        type=_eps,
        default=SEARCH_PROBES.eps,
        help="L-inf radius of the adversarial probes the search scores on (default %(default)s)",
    )
    p.add_argument(
        "--probe-seed",
        type=int,
        default=SEARCH_PROBES.seed,
        help="seed of the probes (default: the --seed)",
    )
    p.add_argument(
        "--floor",
        action="append",
        metavar="PROXY=VALUE",
        help="stop before a proxy crosses VALUE (PROXY one of " + ", ".join(PROXIES) + ")",
    )
    p.add_argument(
        "--round-to",
        type=_positive_int,
        default=search_default["round_to"],
        help="keep each group's channels at a multiple of N (or whole), e.g. 8 (default %(default)s: any width)",
    )
    p.add_argument(
        "--target-latency",
        type=_fraction,
        help="fraction of the original's latency to keep, measured on this machine (per-layer latency table)",
    )
    p.add_argument(
        "--latency-batch",
        type=_positive_int,
        default=search_default["latency_batch"],
        help="batch size --target-latency is measured at (default %(default)s)",
    )
    p.add_argument(
        "--latency-threads",
        type=_positive_int,
        default=search_default["latency_threads"],
        help="torch threads --target-latency is measured with (default: torch's setting)",
    )
    p.add_argument("--seed", type=int, default=search_default["seed"])
    p.add_argument(
        "--storage",
        help="Optuna storage to make the search resumable: sqlite:///file.db; postgresql://... or journal:FILE "
        "also lets `robustprune worker` processes on other machines add trials (docs/search.md)",
    )
    p.add_argument("--study", default="robustprune", help="name of the search in the storage (default %(default)s)")
    p.add_argument(
        "--recover",
        action="store_true",
        help="then distill the pruned model from the original on synthetic inputs (changes weights; see "
        "'robustprune recover')",
    )
    p.add_argument("--recover-steps", type=_positive_int, help=f"default {recover_default['steps']}")
    p.add_argument("--recover-batch-size", type=_positive_int, help=f"default {recover_default['batch_size']}")
    p.add_argument("--recover-pool-size", type=_positive_int, help=f"default {recover_default['pool_size']}")
    p.add_argument("--recover-synthesis-steps", type=_positive_int, help="Adam steps inverting each pool image")
    p.add_argument("--recover-expand", type=_positive_int, help=f"default {recover_default['expand']}")
    p.add_argument("--recover-checkpoint-dir", help="recovery checkpoints go there; rerun to resume")
    p.add_argument("--device", default="cpu", help="cpu or cuda: where the search and the evaluation run")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--overwrite", action="store_true", help=overwrite_help)
    p.add_argument("--data-root", help="folder with the Fashion-MNIST IDX .gz files")
    p.add_argument("--no-eval", action="store_true", help="skip the real-data evaluation (cost only)")
    p.add_argument(
        "--eps",
        type=_eps,
        default=EvalSettings.eps,
        help="L-inf radius of the evaluation's attacks (default %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_search)

    p = add("demo", "The main job on the built-in default: search-prune zoo:resnet20 to half its MACs and compare.")
    p.add_argument("--model", default="zoo:resnet20")
    p.add_argument("--target-macs", type=_fraction, default=0.5)
    p.add_argument("--trials", type=_positive_int, default=search_default["trials"], help="Optuna trials per step")
    p.add_argument("--seed", type=int, default=search_default["seed"])
    p.add_argument("--out", default=DEMO_OUT)
    p.add_argument("--overwrite", action="store_true", help=overwrite_help)
    p.add_argument("--data-root", help="folder with the Fashion-MNIST IDX .gz files")
    p.add_argument(
        "--eps",
        type=_eps,
        default=0.01,
        help="L-inf radius of the before/after attacks (default 0.01: at 0.1 every zoo model, pruned or not, "
        "is near 0%% robust, which says nothing)",
    )
    p.add_argument("--quiet", action="store_true", help="no per-trial progress")
    p.set_defaults(func=_cmd_demo)

    p = add(
        "recover",
        "Distill a pruned run folder from its original on synthetic inputs only (changes weights; opt-in).",
    )
    p.add_argument("run", help="run folder with spec.json and pruned.pt (from search or baseline)")
    p.add_argument("--out", required=True, help="new run folder: pruned.pt, spec.json, recover.json, report.json")
    p.add_argument("--original", help="the unpruned model (default: the model the run folder names)")
    p.add_argument("--weights", help="state dict for --original (loaded with weights_only=True)")
    p.add_argument("--allow-pickle", action="store_true", help="allow full pickles in --weights")
    p.add_argument("--allow-code", action="store_true", help="let the run folder's package.module:factory run")
    p.add_argument("--steps", type=_positive_int, help=f"training steps (default {recover_default['steps']})")
    p.add_argument("--batch-size", type=_positive_int, help=f"default {recover_default['batch_size']}")
    p.add_argument("--pool-size", type=_positive_int, help=f"synthetic images (default {recover_default['pool_size']})")
    p.add_argument("--synthesis-steps", type=_positive_int, help="Adam steps inverting each pool image")
    p.add_argument("--expand", type=_positive_int, help=f"over-parameterization (default {recover_default['expand']})")
    p.add_argument("--seed", type=int, default=recover_default["seed"], help="training and evaluation seed")
    p.add_argument("--checkpoint-dir", help="write checkpoints there and resume from them")
    p.add_argument("--device", default="cpu", help="cpu or cuda: where to train and evaluate")
    p.add_argument("--data-root", help="folder with the Fashion-MNIST IDX .gz files")
    p.add_argument("--no-eval", action="store_true", help="skip the real-data evaluation (cost only)")
    p.add_argument("--eps", type=_eps, default=0.1, help="L-inf radius of the evaluation's attacks (default 0.1)")
    p.add_argument("--overwrite", action="store_true", help=overwrite_help)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_recover)

    p = add(
        "quantize",
        "int8 post-training quantization (PT2E) of a run's model, calibrated on synthetic inputs (no data), "
        "Gaussian noise, or real images; evaluated like any run.",
    )
    p.add_argument("run", help="run folder with spec.json and pruned.pt (from search, baseline or recover)")
    p.add_argument("--out", required=True, help="new run folder: int8.pt2, pruned.pt, spec.json, quantize.json")
    p.add_argument(
        "--calibration",
        default="synthetic",
        choices=("synthetic", "gaussian", "real"),
        help="synthetic: the search's probes (default); gaussian: noise; real: Fashion-MNIST train[:N]",
    )
    p.add_argument("--n", type=_positive_int, help=f"calibration inputs (default: {_QUANTIZE_N_HELP})")
    p.add_argument("--backend", default="x86", choices=("x86", "xnnpack"), help="quantizer (default %(default)s)")
    p.add_argument("--original", help="the unpruned model, for synthetic inputs (default: the run's model)")
    p.add_argument("--weights", help="state dict for --original (loaded with weights_only=True)")
    p.add_argument("--allow-pickle", action="store_true", help="allow full pickles in --weights")
    p.add_argument("--allow-code", action="store_true", help="let the run folder's package.module:factory run")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration inputs and the evaluation")
    p.add_argument("--data-root", help="folder with the Fashion-MNIST IDX .gz files")
    p.add_argument("--no-eval", action="store_true", help="skip the real-data evaluation (cost only)")
    p.add_argument("--eps", type=_eps, default=0.1, help="L-inf radius of the evaluation's attacks (default 0.1)")
    p.add_argument("--overwrite", action="store_true", help=overwrite_help)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_quantize)

    p = add("bench", "Run a benchmark suite (models x methods x targets x seeds); resumes finished cells.")
    p.add_argument("--suite", required=True, help="quick, full, or a suite JSON file")
    p.add_argument("--out", required=True)
    p.add_argument("--eval-device", help="run the real-data evaluation there, e.g. cuda (pruning stays on the CPU)")
    p.add_argument("--search-device", help="run the search and its synthesis there, e.g. cuda")
    p.add_argument(
        "--summarize-only", action="store_true", help="rewrite summary.md, CSV, JSON and plots from the finished cells"
    )
    p.add_argument("--workers", type=int, default=1, help="cells run in parallel processes (default 1)")
    p.add_argument("--threads", type=int, help="torch threads per worker (default: torch's own choice)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_bench)

    p = add("export", "Turn a pruned run folder into a model file: TorchScript, torch.export, ONNX or a state dict.")
    p.add_argument("run", nargs="?", help="run folder with spec.json and pruned.pt")
    p.add_argument("--spec", help="spec.json (instead of a run folder)")
    p.add_argument("--weights", help="pruned.pt next to --spec")
    p.add_argument(
        "--format",
        default="torchscript",
        choices=FORMATS,
        help="onnx needs the onnx extra and is checked against the model with ONNX Runtime (default torchscript)",
    )
    p.add_argument("--allow-pickle", action="store_true")
    p.add_argument(
        "--allow-code",
        action="store_true",
        help="let a run folder whose spec names package.module:factory import and run it (trusted folders only)",
    )
    p.add_argument("--out", required=True)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_export)

    p = add("plot", "Redraw a run's plots, or compare several runs' fronts on one figure.")
    p.add_argument("runs", nargs="+", help="search run folders")
    p.add_argument("--out", help="output folder (default: RUN/plots for one run, . for several)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_plot)

    p = add("worker", "Add trials to a search that `robustprune search --storage URL` coordinates.")
    p.add_argument("--storage", required=True, help="the coordinator's storage: postgresql://... or journal:FILE")
    p.add_argument("--study", default="robustprune", help="the search's --study name (default %(default)s)")
    p.add_argument("--model", help="load the model from here instead of the coordinator's reference (same weights)")
    p.add_argument("--weights", help="state dict for a package.module:factory model (weights_only=True)")
    p.add_argument("--allow-code", action="store_true", help="let a package.module:factory model reference run")
    p.add_argument("--device", default="cpu", help="cpu or cuda: where this worker scores its trials")
    p.add_argument(
        "--wait", type=float, help="give up after this many seconds without a published search (default: wait)"
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_worker)

    p = add("zoo", "List the reference models shipped with robustprune.")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_zoo)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input (exit 2, one line). Anything else is a bug (exit 1)."""
    from robustprune._io import RunFolderError
    from robustprune.bench import SuiteError
    from robustprune.data.fashion_mnist import DataError, DataNotFoundError
    from robustprune.deploy import DeployError
    from robustprune.models import ModelRefError
    from robustprune.quantize.ptq import QuantizeError
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
    )


def _where_saved(args: argparse.Namespace) -> str:
    saved = getattr(args, "saved_run", None)
    return f"; the pruned model is saved in {saved} (without report.json)" if saved else ""


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"robustprune {args.command}: interrupted{_where_saved(args)}", file=sys.stderr)
        return 130
    except Exception as exc:
        if isinstance(exc, _user_errors()):
            print(f"robustprune {args.command}: error: {_one_line(exc)}{_where_saved(args)}", file=sys.stderr)
            return 2
        if getattr(args, "debug", False):
            traceback.print_exc()
        hint = "" if getattr(args, "debug", False) else " (rerun with --debug for the traceback)"
        print(
            f"robustprune {args.command}: internal error: {type(exc).__name__}: {_one_line(exc)}"
            f"{_where_saved(args)}{hint}",
            file=sys.stderr,
        )
        return 1


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 success, 1 an unexpected (internal) error, 2 bad usage or input, 130 interrupted."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        code = _run(args)
    except KeyboardInterrupt:  # while the heavy modules are imported or the parser is built
        print("robustprune: interrupted", file=sys.stderr)
        code = 130
    if code == 130 and argv is None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C while exiting prints no traceback
    return code


if __name__ == "__main__":
    sys.exit(main())
