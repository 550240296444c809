"""Wall time of the default search on each device of one machine.

    python benchmarks/search_device_time.py [--model resnet20] [--target 0.5] [--devices cpu cuda] [--threads 2]

Runs the default search (probes from the disk cache, generated first if missing, so only the
search itself is timed) once per device, in the same process on the same machine, and writes
results/search_device_time.md with the wall times, their ratio to the first device, and what
each committed. The search is deterministic per device; across devices float rounding may
change a tie between trials, so the table says whether the committed amounts agree.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from robustprune import SearchConfig, search, zoo
from robustprune._io import atomic_write_text
from robustprune._provenance import provenance
from robustprune.models import check_device
from robustprune.probes.cache import cached_generate

RESULTS = Path(__file__).resolve().parent.parent / "results"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "search_device_time.md"))
    args = parser.parse_args(argv)
    for device in args.devices:
        check_device(device)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/search_device_time.py " + " ".join(sys.argv[1:] if argv is None else argv)
    model, spec = zoo.load(args.model)
    config = SearchConfig(target_macs=args.target)
    cached_generate(model, spec, config.probe_config.synthetic)  # so no device pays for the synthesis
    rows = []
    for device in args.devices:
        start = time.time()
        result = search(model.to(device), spec, config=config, quiet=True)
        seconds = time.time() - start
        last = result.history[-1]
        rows.append((device, seconds, last, result.amounts))
        print(device, f"{seconds:.1f}s", file=sys.stderr, flush=True)
    first = rows[0]
    p = provenance()
    lines = [
        f"# Search wall time per device: {args.model} to {args.target:g} of the original MACs",
        "",
        f"Produced by `{command.strip()}` at commit `{p['commit']}` on {p['machine']}; seed 0, default "
        f"search settings, {args.threads} torch CPU threads, probes from the disk cache.",
        "",
        "| device | search s | vs first | kept MACs | fidelity | robust fidelity | same amounts as first |",
        "|---|---|---|---|---|---|---|",
    ]
    for device, seconds, last, amounts in rows:
        lines.append(
            f"| {device} | {seconds:.1f} | {seconds / first[1]:.2f}x | {100 * last.kept_macs:.1f}% "
            f"| {last.proxies['fidelity']:.3f} | {last.proxies['robust_fidelity']:.3f} | {amounts == first[3]} |"
        )
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
