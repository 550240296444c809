"""Real-data evaluation of any classifier: accuracy, robustness, corruptions, OOD, calibration, cost.

This is the ruler every pruned model is measured with. It only *reads* real data;
nothing here feeds back into pruning decisions.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from robustprune._progress import progress_bar, write_line
from robustprune._provenance import provenance
from robustprune.data.fashion_mnist import EVAL_SPLITS, EvalSplit, fits_fashion_mnist, load_eval_split
from robustprune.data.ood import ood_sets
from robustprune.evaluate.cost import count_macs_params, latency_ms
from robustprune.evaluate.metrics import (
    accuracy,
    expected_calibration_error,
    ood_auroc,
    predict_logits,
)
from robustprune.evaluate.robustness import robustness_metrics
from robustprune.evaluate.userdata import model_cost
from robustprune.spec import InputSpec, SpecError, validate_model

SUPPORTED_DATA = ("fashion-mnist",)
REPORT_KEYS = (
    "clean_accuracy",
    "robust_accuracy",
    "corruption_accuracy",
    "corruption_accuracy_per",
    "ood_auroc",
    "ece",
    "macs",
    "params",
    "latency_ms",
    "provenance",
)


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """What the evaluation measures on; the defaults are the ones every published number uses.

    ``n_attack`` and ``n_corruption`` images are a fixed seeded subset of the test set
    (the same subset for every model given the same seed), so models are compared on
    identical inputs.
    """

    eps: float = 0.1  # L-inf radius, a fraction of the pixel range (pixels in [0, 1]: in pixels)
    pgd_steps: int = 10
    n_attack: int = 1000
    n_corruption: int = 1000
    n_ood: int = 2000
    seed: int = 0
    latency: bool = True
    latency_repeats: int = 20
    split: EvalSplit = "test"  # or "val": the held-out train[55000:], where every design decision is made

    def __post_init__(self) -> None:
        if self.split not in EVAL_SPLITS:
            raise ValueError(f"split must be one of {', '.join(EVAL_SPLITS)}, got {self.split!r}")
        if not 0.0 <= self.eps <= 1.0:
            raise ValueError(f"eps is a fraction of the pixel range, in [0, 1]; got {self.eps}")
        for name in ("pgd_steps", "n_attack", "n_corruption", "n_ood", "latency_repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        write_line(f"[eval] {message}")


def evaluate(
    model: nn.Module,
    spec: InputSpec,
    data: str | Path | tuple = "fashion-mnist",
    root: str | Path | None = None,
    settings: EvalSettings | None = None,
    device: str | torch.device | None = None,
    model_ref: str | None = None,
    quiet: bool = False,
    progress: Callable[[str], None] | None = None,
    original: nn.Module | None = None,
    ood: str | Path | dict[str, torch.Tensor] | None = None,
    data_name: str | None = None,
) -> dict:
    """Measure ``model`` on real test data and return a dict with the keys of ``REPORT_KEYS``.

    ``data`` is ``"fashion-mnist"`` (the default and the benchmark), or the user's data for any spec: a path
    (an image-folder tree, an ``.npz`` / ``.pt`` file of ``x`` and ``y``; see
    :func:`robustprune.data.user.load_user_data`) or a tuple ``(x, y)`` of pixels and labels (``y`` may be
    None). User data reports the metrics that apply, plus ``agreement`` with ``original`` when given (what
    unlabeled data is measured by), and OOD AUROC against ``ood`` (a path or ``{name: pixels}``). ``data_name``
    names given tensors in the report's provenance (by default "the given tensors").
    The model is not modified (its train/eval mode is restored). Raises
    DataNotFoundError, with the install command, when Fashion-MNIST is missing.
    """
    settings = settings or EvalSettings()
    validate_model(model, spec)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if not (isinstance(data, str) and data in SUPPORTED_DATA):
        return _evaluate_user_data(
            model, spec, data, settings, device, model_ref, quiet, progress, original, ood, data_name
        )
    if original is not None or ood is not None:
        raise ValueError("original= and ood= are for the user's data; Fashion-MNIST has its own OOD sets")
    if not fits_fashion_mnist(spec):
        raise SpecError(
            f"Fashion-MNIST evaluation needs a (1, 28, 28) input with 10 classes; spec has "
            f"shape {spec.shape} and {spec.num_classes} classes: evaluate on your own data (--data PATH)"
        )
    spec = spec.unit_range()[0]  # Fashion-MNIST pixels are in [0, 1]: the same model inputs as the spec's range
    say = progress or (lambda m: _log(m, quiet))
    start = time.time()
    x_test, y_test = load_eval_split(settings.split, root)
    subset = torch.randperm(len(x_test), generator=torch.Generator().manual_seed(settings.seed))

    # stages: clean, fgsm, pgd, 40 corruption sets, ood, latency
    bar = progress_bar(45 + int(settings.latency), "evaluating", quiet=quiet or progress is not None, unit="stage")
    say(f"clean accuracy and calibration on {len(x_test):,} Fashion-MNIST {settings.split} images")
    logits = predict_logits(model, spec, x_test, device=device)
    report: dict = {"clean_accuracy": accuracy(logits, y_test), "ece": expected_calibration_error(logits, y_test)}
    bar.update(1)

    report.update(robustness_metrics(model, spec, x_test, y_test, subset, settings, device, say, lambda: bar.update(1)))

    say("OOD detection AUROC (max softmax) against digits, flipped images, uniform noise")
    report["ood_auroc"] = {
        name: ood_auroc(logits, predict_logits(model, spec, x_ood, device=device))
        for name, x_ood in ood_sets(x_test[subset], n=settings.n_ood, seed=settings.seed).items()
    }

    bar.update(1)
    macs, params = model_cost(model, spec)
    report["macs"], report["params"] = macs, params
    if settings.latency:
        say("CPU latency, batch 1 and batch 256" if torch.device(device).type == "cpu" else "latency")
        report["latency_ms"] = {
            "batch1": latency_ms(model, spec, 1, repeats=settings.latency_repeats, device=device),
            "batch256": latency_ms(model, spec, 256, repeats=max(3, settings.latency_repeats // 4), device=device),
        }
        bar.update(1)
    else:
        report["latency_ms"] = {"batch1": None, "batch256": None}
    bar.close()
    report["provenance"] = provenance(
        model=model_ref, data=data, seed=settings.seed, device=str(device), settings=dataclasses.asdict(settings)
    )
    say(f"done in {time.time() - start:.0f}s")
    return {key: report[key] for key in REPORT_KEYS}


def _evaluate_user_data(
    model, spec, data, settings, device, model_ref, quiet, progress, original, ood, data_name
) -> dict:
    from robustprune.data.user import check_user_data, load_user_data
    from robustprune.evaluate.userdata import check_original, evaluate_user_data

    if isinstance(data, tuple):
        x, y = data
        x, y = check_user_data("data", x, y, spec)
        name = data_name or "the given tensors"
    else:
        x, y = load_user_data(data, spec, quiet=quiet)
        name = str(data)
    if original is not None:
        check_original(original, spec)
    if isinstance(ood, str | Path):
        # another dataset's labels mean nothing here
        ood = {Path(ood).name: load_user_data(ood, spec, labels=False, quiet=quiet)[0]}
    return evaluate_user_data(
        model, spec, x, y, settings, device, name, model_ref, original=original, ood=ood, quiet=quiet, progress=progress
    )


def cost_only_report(
    model: nn.Module, spec: InputSpec, reason: str, model_ref: str | None = None, latency: bool = True
) -> dict:
    """The report's keys with MACs, params and latency filled in and the data metrics set to None.

    Used when the evaluation data is not installed: ``reason`` (how to install it) goes into the provenance.
    """
    macs, params = count_macs_params(model, spec)
    report = {key: None for key in REPORT_KEYS}
    report.update(macs=macs, params=params, latency_ms={"batch1": None, "batch256": None})
    if latency:
        report["latency_ms"] = {
            "batch1": latency_ms(model, spec, 1),
            "batch256": latency_ms(model, spec, 256, repeats=5),
        }
    report["provenance"] = provenance(model=model_ref, data=None, data_missing=reason)
    return report


def format_report(report: dict, title: str | None = None) -> str:
    """A human-readable table of an evaluation report (missing metrics show as n/a)."""
    return format_table({title or "model": report})


def _report_rows(report: dict) -> list[tuple[str, str]]:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f}%"

    def num(v, fmt="{:.4f}"):
        return "n/a" if v is None else fmt.format(v)

    robust = report.get("robust_accuracy") or {}
    rows = [
        ("clean accuracy", pct(report.get("clean_accuracy"))),
        ("FGSM robust accuracy", pct(robust.get("fgsm"))),
        ("PGD robust accuracy", pct(robust.get("pgd"))),
        ("mean corruption accuracy", pct(report.get("corruption_accuracy"))),
    ]
    rows += [(f"  {name}", pct(v)) for name, v in (report.get("corruption_accuracy_per") or {}).items()]
    rows += [(f"OOD AUROC ({name})", num(v)) for name, v in (report.get("ood_auroc") or {}).items()]
    agreement = report.get("agreement") or {}
    rows += [(f"agreement with original{'' if k == 'clean' else ' (' + k + ')'}", pct(v)) for k, v in agreement.items()]
    threads = (report.get("provenance") or {}).get("threads")
    lat = report.get("latency_ms") or {}
    rows += [
        ("ECE (15 bins)", num(report.get("ece"))),
        ("MACs", num(report.get("macs"), "{:,.0f}")),
        ("params", num(report.get("params"), "{:,.0f}")),
        (f"latency batch 1 ({threads} threads)", num(lat.get("batch1"), "{:.3f} ms")),
        (f"latency batch 256 ({threads} threads)", num(lat.get("batch256"), "{:.2f} ms")),
    ]
    return rows


def format_table(reports: dict[str, dict]) -> str:
    """Several reports side by side, one column each (e.g. before / after pruning)."""
    columns = {name: dict(_report_rows(r)) for name, r in reports.items()}
    labels = [label for label, _ in _report_rows(next(iter(reports.values())))]
    width = max(len(label) for label in labels)
    widths = {name: max(len(name), *(len(v) for v in col.values())) for name, col in columns.items()}
    lines = [" " * width + "  " + "  ".join(name.rjust(widths[name]) for name in columns)]
    for label in labels:
        lines.append(
            label.ljust(width) + "  " + "  ".join(col.get(label, "").rjust(widths[n]) for n, col in columns.items())
        )
    return "\n".join(lines)
