"""A command's run folder and report: written together before the evaluation, report.json last."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path

from robustprune.cli import _common as c

#: The password of a URL (``scheme://user:password@host``), kept out of the recorded command line.
_PASSWORD = re.compile(r"(://[^/@:\s]+:)[^@\s]+@")


def save_run(args: argparse.Namespace, out: Path, write) -> None:
    """Write the run's files (all but report.json) into ``out`` together, before the evaluation:
    a failed or interrupted evaluation then still leaves the pruned model."""
    from robustprune._io import OWNED_FILES, staged_directory

    with staged_directory(out, owned=OWNED_FILES) as staging:
        write(staging)
    args.saved_run = out


def where_saved(args: argparse.Namespace) -> str:
    saved = getattr(args, "saved_run", None)
    return f"; the pruned model is saved in {saved} (without report.json)" if saved else ""


def finish_run(args: argparse.Namespace, out: Path, name: str, report: dict, files: str) -> int:
    """Add report.json to the written run folder and print the report (JSON, a table, or nothing)."""
    from robustprune._io import atomic_write_json
    from robustprune.evaluate.harness import format_table

    argv = getattr(args, "argv", None)
    if argv is not None:  # what reproduces the run: the command line as given
        command = shlex.join(["robustprune", *argv])
        report.setdefault("provenance", {})["command"] = _PASSWORD.sub(r"\1***@", command)  # a --storage URL's
    atomic_write_json(out / "report.json", report)
    if args.json:
        print(json.dumps(report, indent=2))
    elif not args.quiet:
        print(format_table({name: report}))
        print(f"wrote {out}/{files}")
    return 0


def report_for_run(model, spec, model_ref: str, args: argparse.Namespace, original=None) -> dict:
    """Real-data metrics on --data, else on Fashion-MNIST when it is installed and fits the spec; otherwise cost
    only, saying why. With --data, ``original`` (the unpruned model) gives the agreement."""
    from robustprune.data.fashion_mnist import INSTALL_HINT, fashion_mnist_available, fits_fashion_mnist
    from robustprune.evaluate.harness import EvalSettings, cost_only_report, evaluate

    data = getattr(args, "data", None)
    no_eval = getattr(args, "no_eval", False)
    settings = EvalSettings(seed=args.seed, eps=getattr(args, "eps", EvalSettings.eps))
    if data and not no_eval:
        return evaluate(
            model, spec, settings=settings, model_ref=model_ref, quiet=args.quiet, original=original,
            **c.user_data_kwargs(args),
        )  # fmt: skip
    fits = fits_fashion_mnist(spec)
    if no_eval or not fits or not fashion_mnist_available(args.data_root):
        if no_eval:
            reason = "skipped (--no-eval)"
        elif not fits:
            reason = f"Fashion-MNIST does not fit input {spec.shape} with {spec.num_classes} classes: give --data PATH"
        else:
            reason = f"Fashion-MNIST not installed: {INSTALL_HINT}"
        if not args.quiet:
            print(f"real-data evaluation {reason}", file=sys.stderr)
        return cost_only_report(model, spec, reason, model_ref=model_ref)
    if not args.quiet and not model_ref.startswith("zoo:"):  # numbers on data the model may not know
        print(
            "real-data evaluation on Fashion-MNIST's test split (the zoo's data, which this input shape and class "
            "count fit); for a model trained on other data give --data PATH, or --no-eval",
            file=sys.stderr,
        )
    return evaluate(model, spec, root=args.data_root, settings=settings, model_ref=model_ref, quiet=args.quiet)
