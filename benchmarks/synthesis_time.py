"""Wall time of synthetic-input generation on this machine (no cache).

    python benchmarks/synthesis_time.py [--model resnet20] [--kind inversion] [--n 512] [--steps 200]

Appends a row to results/synthesis_time.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from robustprune import zoo
from robustprune._provenance import provenance
from robustprune.probes.synthetic import SyntheticConfig, bn_statistics_loss, generate

RESULTS = Path(__file__).resolve().parent.parent / "results"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--kind", default="inversion")
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/synthesis_time.py " + " ".join(sys.argv[1:] if argv is None else argv)
    model, spec = zoo.load(args.model)
    config = SyntheticConfig(kind=args.kind, n=args.n, steps=args.steps)
    start = time.time()
    result = generate(model, spec, config, progress=lambda m: print(m, file=sys.stderr, flush=True))
    seconds = time.time() - start
    similarity = bn_statistics_loss(model, spec.normalize(result.pixels))
    prov = provenance()
    path = RESULTS / "synthesis_time.md"
    if not path.exists():
        path.write_text(
            "# Synthetic-input generation time\n\nEach row: one run of the command shown, no cache.\n\n"
            "| model | kind | images | Adam steps | batch | seconds | BN-statistics distance | threads | "
            "command | commit | machine |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
        )
    with path.open("a") as fh:
        fh.write(
            f"| {args.model} | {args.kind} | {args.n} | {args.steps} | {config.batch_size} | {seconds:.0f} | "
            f"{similarity:.4f} | {prov['threads']} | `{command.strip()}` | `{prov['commit']}` | "
            f"{prov['machine']} |\n"
        )
    print(f"{seconds:.0f}s")


if __name__ == "__main__":
    main()
