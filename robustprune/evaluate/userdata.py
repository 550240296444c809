"""Evaluation on the user's own data (any InputSpec): the harness's metrics that apply to it.

Labeled data gives clean accuracy, ECE, FGSM/PGD robust accuracy and corruption accuracy (images only). Unlabeled data
gives those as *agreement* with an original model's top-1 on the clean input, when the original is given.
OOD AUROC needs an OOD set from the user (the Fashion-MNIST ones do not apply to other data). MACs, params
and latency always. Attacks and corruptions work in [0, 1]: another pixel range is mapped onto it exactly
(the spec's mean and std with it), so ``eps`` is a fraction of the pixel range.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import torch
from torch import nn

from robustprune._progress import progress_bar, write_line
from robustprune._provenance import provenance
from robustprune.data.corruptions import CORRUPTIONS, SEVERITIES
from robustprune.data.user import check_user_data
from robustprune.evaluate.cost import count_macs_params, latency_ms
from robustprune.evaluate.metrics import (
    accuracy,
    expected_calibration_error,
    ood_auroc,
    predict_logits,
)
from robustprune.evaluate.robustness import has_corruptions, robustness_metrics
from robustprune.spec import InputSpec, SpecError

#: The keys of a report on the user's data: the Fashion-MNIST report's keys plus ``agreement``.
AGREEMENT = "agreement"


def evaluate_user_data(
    model: nn.Module,
    spec: InputSpec,
    x: torch.Tensor,
    y: torch.Tensor | None,
    settings,
    device: torch.device | str,
    data_name: str,
    model_ref: str | None = None,
    original: nn.Module | None = None,
    ood: dict[str, torch.Tensor] | None = None,
    quiet: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """The report of :func:`robustprune.evaluate.harness.evaluate` for data ``x`` (pixels of ``spec``), ``y``.

    Metrics that need labels are None when ``y`` is None; with ``original`` they are then measured against the
    original's top-1 and reported under ``agreement`` (with labels, ``agreement`` holds the clean agreement).
    """
    from robustprune.evaluate.harness import REPORT_KEYS

    say = progress or ((lambda m: None) if quiet else (lambda m: write_line(f"[eval] {m}")))
    start = time.time()
    unit, x = spec.unit_range(x)
    ood = {  # API callers' tensors get the checks files get (shape, finite, inside the pixel range)
        name: spec.unit_range(check_user_data(f"OOD set {name!r}", pixels, None, spec)[0])[1]
        for name, pixels in (ood or {}).items()
    }
    report: dict = {key: None for key in REPORT_KEYS}
    report[AGREEMENT] = None
    say(f"{'labeled' if y is not None else 'unlabeled'} data: {len(x):,} inputs from {data_name}")
    logits = predict_logits(model, unit, x, device=device)
    reference = None
    if original is not None:
        reference = predict_logits(original, unit, x, device=device).argmax(1)
        report[AGREEMENT] = {"clean": float((logits.argmax(1) == reference).double().mean())}
    labels = y if y is not None else reference
    corruption_sets = len(CORRUPTIONS) * len(SEVERITIES) * has_corruptions(spec)
    stages = (2 + corruption_sets) * (labels is not None) + int(settings.latency)
    bar = progress_bar(max(stages, 1), "evaluating", quiet=quiet or progress is not None, unit="stage")
    if labels is not None:
        measured = _label_metrics(model, unit, x, labels, logits, settings, device, say, bar)
        if y is not None:
            report.update(measured)
        else:
            report[AGREEMENT].update(
                fgsm=measured["robust_accuracy"]["fgsm"],
                pgd=measured["robust_accuracy"]["pgd"],
                corruption=measured["corruption_accuracy"],
            )
    elif not quiet:
        say("no labels and no original model: only cost, latency and OOD (give --original REF for agreement)")
    if ood:
        say(f"OOD detection AUROC (max softmax) against {', '.join(ood)}")
        report["ood_auroc"] = {
            name: ood_auroc(logits, predict_logits(model, unit, pixels, device=device)) for name, pixels in ood.items()
        }
    report["macs"], report["params"] = model_cost(model, spec)
    report["latency_ms"] = {"batch1": None, "batch256": None}
    if settings.latency:
        say("latency, batch 1 and batch 256")
        report["latency_ms"] = {
            "batch1": latency_ms(model, spec, 1, repeats=settings.latency_repeats, device=device),
            "batch256": latency_ms(model, spec, 256, repeats=max(3, settings.latency_repeats // 4), device=device),
        }
        bar.update(1)
    bar.close()
    report["provenance"] = provenance(
        model=model_ref,
        data=data_name,
        labels="data" if y is not None else ("original model's top-1" if original is not None else None),
        examples=len(x),
        seed=settings.seed,
        device=str(device),
        settings=dataclasses.asdict(settings),
    )
    say(f"done in {time.time() - start:.0f}s")
    return report


def _label_metrics(model, unit, x, labels, logits, settings, device, say, bar) -> dict:
    """Clean accuracy, ECE, FGSM/PGD and corruption accuracy against ``labels`` (true or the original's)."""
    out = {"clean_accuracy": accuracy(logits, labels), "ece": expected_calibration_error(logits, labels)}
    subset = torch.randperm(len(x), generator=torch.Generator().manual_seed(settings.seed))
    out.update(robustness_metrics(model, unit, x, labels, subset, settings, device, say, lambda: bar.update(1)))
    return out


def model_cost(model: nn.Module, spec: InputSpec) -> tuple[int | None, int]:
    """(MACs, params); TorchScript cannot be hooked to count MACs, so its MACs are None."""
    if isinstance(model, torch.jit.ScriptModule):
        return None, sum(p.numel() for p in model.parameters())
    return count_macs_params(model, spec)


def check_original(original: nn.Module, spec: InputSpec) -> None:
    """The original must map the same inputs to the same classes as the evaluated model."""
    from robustprune.spec import validate_model

    try:
        validate_model(original, spec)
    except SpecError as exc:
        raise SpecError(f"the original model does not fit the evaluated model's input spec: {exc}") from None
