"""Which PT2E int8 quantizer configuration works on a residual model (zoo:resnet20)?

    python -m benchmarks.quantizer_check [--model resnet20]

For torchao's X86InductorQuantizer and the XNNPACK quantizer, with strict and non-strict
``torch.export`` (dynamic batch), this annotates (``prepare_pt2e``), calibrates on 2 random inputs,
converts, and reports success or the first line of the error, and the int8 program's relative
output error against the float model. Writes results/quantizer_check.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from robustprune import zoo
from robustprune._io import atomic_write_text
from robustprune._provenance import provenance
from robustprune.quantize.ptq import _export, _quantizer

RESULTS = Path(__file__).resolve().parent.parent / "results"


def check(model, spec, backend: str, strict: bool) -> str:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    x = spec.normalize(torch.rand(2, *spec.shape, generator=torch.Generator().manual_seed(0)))
    try:
        prepared = prepare_pt2e(_export(model, x, strict=strict).module(), _quantizer(backend))
        prepared(x)
        converted = convert_pt2e(prepared)
        with torch.no_grad():
            want = model(x)
            error = float((converted(x) - want).norm() / want.norm())
        return f"works (relative output error {error:.3f})"
    except Exception as exc:  # the point is to record what each configuration raises
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"fails: {type(exc).__name__}: {first[:160]}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--out", default=str(RESULTS / "quantizer_check.md"))
    args = parser.parse_args(argv)
    command = "python -m benchmarks.quantizer_check " + " ".join(sys.argv[1:] if argv is None else argv)
    model, spec = zoo.load(args.model)
    info = provenance()
    import torchao

    lines = [
        f"# PT2E int8 quantizers on zoo:{args.model}",
        "",
        f"Produced by `{command.strip()}` at commit `{info['commit']}` on {info['machine']}; "
        f"torch {info['torch']}, torchao {torchao.__version__}.",
        "",
        "| quantizer | export | result |",
        "|---|---|---|",
    ]
    for backend in ("x86", "xnnpack"):
        for strict in (True, False):
            result = check(model, spec, backend, strict)
            lines.append(f"| {backend} | {'strict' if strict else 'non-strict'} | {result} |")
            print(lines[-1], flush=True)
    lines.append("")
    atomic_write_text(Path(args.out), "\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
