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
  robustprune eval --model traced.ts --eps 0.05 --n-attack 2000""",
    "baseline": """examples:
  robustprune baseline --model zoo:resnet20 --method l1_uniform --target-macs 0.5 --out runs/r20-l1
  robustprune baseline --model zoo:mlp --method paoding --target-params 0.5 --out runs/mlp-paoding
  robustprune baseline --model zoo:cnn --method global_magnitude --target-macs 0.7 --no-eval --out runs/cnn-gm""",
    "search": """examples:
  robustprune search --model zoo:resnet20 --target-macs 0.5 --out runs/r20
  robustprune search --model zoo:mlp --target-params 0.5 --sampler cmaes --seed 1 --out runs/mlp
  robustprune search --model zoo:cnn --target-macs 0.7 --storage sqlite:///cnn.db --out runs/cnn   # resumable
  robustprune search --model zoo:cnn --target-macs 0.5 --sampler nsga2 --floor fidelity=0.9 --out runs/cnn-mo""",
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
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url)
    except Exception as exc:  # ArgumentError, NoSuchModuleError, a missing driver (ImportError), ...
        raise UsageError(f"--storage {url!r} is not a database URL such as sqlite:///search.db ({exc})") from None
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
    _check_eval_data(args, required=True)
    model, spec = load_model(args.model, weights=args.weights, allow_pickle=args.allow_pickle, device=args.device)
    report = evaluate(
        model, spec, root=args.data_root, settings=settings, device=args.device, model_ref=args.model, quiet=args.quiet
    )
    if out:
        atomic_write_json(out, report)
    if not args.quiet:
        print(format_report(report, title=f"{args.model}"))
        if out:
            print(f"wrote {out}")
    return 0


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


def _report_for_run(model, spec, model_ref: str, args: argparse.Namespace) -> dict:
    """Real-data metrics when Fashion-MNIST is installed; otherwise cost only, saying how to get the data."""
    from robustprune.data.fashion_mnist import INSTALL_HINT, fashion_mnist_available
    from robustprune.evaluate.harness import EvalSettings, cost_only_report, evaluate

    if getattr(args, "no_eval", False) or not fashion_mnist_available(args.data_root):
        reason = (
            "skipped (--no-eval)" if getattr(args, "no_eval", False) else f"Fashion-MNIST not installed: {INSTALL_HINT}"
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
    from robustprune.models import load_model

    if args.target_macs is None and args.target_params is None:
        raise UsageError("give --target-macs and/or --target-params (fraction of the original to keep)")
    if args.method == "paoding" and args.target_macs is not None and args.target_params is not None:
        raise UsageError("the paoding baseline takes one target: --target-macs or --target-params")
    out = _check_run_dir(args, "baseline")
    _check_eval_data(args)
    model, spec = load_model(args.model, weights=args.weights, allow_pickle=args.allow_pickle)
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
    )
    reached = result.kept_fraction
    if not args.quiet:
        print(
            f"{args.method}: kept {100 * reached['macs']:.1f}% of MACs, {100 * reached['params']:.1f}% of params",
            file=sys.stderr,
        )
    _save_run(args, out, lambda staging: result.save(staging, model_ref=args.model))
    report = _report_for_run(result.model, spec, f"{args.model} ({args.method})", args)
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

    if args.target_macs is None and args.target_params is None:
        raise UsageError("give --target-macs and/or --target-params (fraction of the original to keep)")
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
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _cmd_search(args: argparse.Namespace) -> int:
    from robustprune.models import load_model
    from robustprune.plots import plot_run
    from robustprune.search import search

    config = search_config_from_args(args)
    recover_config = _recover_config_from_args(args, prefix="recover_") if args.recover else None
    _check_device(args.device)
    out = _check_run_dir(args, "search+recover" if args.recover else "search")
    _check_storage(args.storage)
    _check_eval_data(args)
    model, spec = load_model(args.model, weights=args.weights, allow_pickle=args.allow_pickle, device=args.device)
    _quiet_trial_failures(args)
    result = search(model, spec, config=config, storage=args.storage, quiet=args.quiet)
    recovered = _recover_search(args, result, model, spec, recover_config) if args.recover else None

    def write(staging: Path) -> None:
        result.save(staging, model_ref=args.model)
        plot_run(staging, staging / "plots")
        if recovered is not None:  # the recovered weights replace the search's pruned.pt
            recovered.save(staging, model_ref=args.model)

    _save_run(args, out, write)
    final = recovered.model if recovered is not None else result.model
    report = _report_for_run(final, spec, f"{args.model} (search{' + recover' if recovered else ''})", args)
    report["provenance"].update(method="search", search=result.summary())
    if recovered is not None:
        report["provenance"].update(method="search+recover", stages=["search", "recover"], recover=recovered.summary())
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
    from robustprune.models import load_model
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
    if not reference.startswith("zoo:") and not (args.allow_code or args.original):
        raise UsageError(f"the original {reference!r} is user code: give --original explicitly or --allow-code")
    original, _ = load_model(reference, weights=args.weights, allow_pickle=args.allow_pickle)
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
    report = _report_for_run(result.model, spec, f"{reference} (recovered)", args)
    report["provenance"].update(method="recover", source=str(source), recover=result.summary())
    return _finish_run(
        args, out, "recovered", report, "pruned.pt, spec.json, recover.json, recover_loss.png, report.json"
    )


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
    from robustprune.deploy import FORMATS
    from robustprune.evaluate.harness import EvalSettings
    from robustprune.importance import CRITERIA
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
        "Evaluate a model on real Fashion-MNIST: accuracy, FGSM/PGD robustness, corruptions, "
        "OOD AUROC, calibration, MACs, params, latency.",
    )
    p.add_argument("--model", required=True, help="zoo:NAME, a TorchScript file, or package.module:factory")
    p.add_argument("--weights", help="state dict for the model (loaded with weights_only=True)")
    p.add_argument("--allow-pickle", action="store_true", help="allow full pickles in --weights (trusted files only)")
    p.add_argument("--json", metavar="OUT", help="write the report as JSON to OUT")
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
    p.add_argument("--model", required=True, help="zoo:NAME or package.module:factory (with --weights)")
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
    p.add_argument("--model", required=True, help="zoo:NAME or package.module:factory (with --weights)")
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
    p.add_argument("--seed", type=int, default=search_default["seed"])
    p.add_argument("--storage", help="Optuna storage URL (sqlite:///file.db) to make the search resumable")
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
