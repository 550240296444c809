"""Cost at ImageNet scale: wall time of the prune space, the synthetic probes and one search step for
torchvision's resnet50 at 3x224x224 (random weights, BN statistics randomized; timing only).

    nice -n 10 python -m benchmarks.scale_time [--images 32] [--synthesis-steps 20] [--trials 8]

The probe count is small on purpose (a CPU budget); the proxy-validity correlations
(results/proxy_validity.md) were measured with 256 synthetic probes and 100 Adam steps, which the
output extrapolates to linearly (synthesis is linear in images x steps, a trial in images).
Writes results/scale_time.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from robustprune._io import atomic_write_text
from robustprune._provenance import provenance
from robustprune.probes.probeset import ProbeConfig
from robustprune.probes.synthetic import SyntheticConfig, generate
from robustprune.search.engine import SEARCH_PROBES, SearchConfig, search
from robustprune.spec import InputSpec
from robustprune.structure import PruneSpace

RESULTS = Path(__file__).resolve().parent.parent / "results"
SPEC = InputSpec(shape=(3, 224, 224), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), num_classes=1000)


def resnet50() -> torch.nn.Module:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--synthesis-steps", type=int, default=20)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "scale_time.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python -m benchmarks.scale_time " + " ".join(sys.argv[1:] if argv is None else argv)
    prov = provenance()
    model = resnet50()
    t0 = time.time()
    space = PruneSpace(model, SPEC)
    space_s = time.time() - t0

    synthetic = SyntheticConfig(n=args.images, steps=args.synthesis_steps, batch_size=args.images)
    t0 = time.time()
    generate(model, SPEC, synthetic)
    synthesis_s = time.time() - t0

    probes = ProbeConfig(synthetic=synthetic, eps=SEARCH_PROBES.eps, n_undesired=args.images)
    config = SearchConfig(target_macs=0.9, steps=1, trials=args.trials, probes=probes)
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.time()
        result = search(model, SPEC, config=config, cache_dir=cache, quiet=True)
        search_s = time.time() - t0
    phases = ", ".join(f"{k} {v:.0f} s" for k, v in result.probe_seconds.items())
    default_n, default_steps = SEARCH_PROBES.synthetic.n, SEARCH_PROBES.synthetic.steps
    scale = default_n * default_steps / (args.images * args.synthesis_steps)
    lines = [
        "# Cost at ImageNet scale: resnet50 at 224x224 on CPU",
        "",
        f"Produced by `{command.strip()}` at commit `{prov['commit']}` on {prov['machine']}, torch {prov['torch']}, "
        "seed 0; torchvision resnet50, random weights. The machine was shared with other jobs (load above its "
        "2 cores), so these are upper bounds. No GPU was lent to this task.",
        "",
        "| phase | setting | seconds |",
        "|---|---|---|",
        f"| prune space (trace + groups) | {len(space.groups)} groups, {space.full_macs / 1e9:.2f} GMACs | "
        f"{space_s:.0f} |",
        f"| synthetic probes (inversion) | {args.images} images x {args.synthesis_steps} Adam steps | "
        f"{synthesis_s:.0f} |",
        f"| one search step to 0.9 MACs (probes built inside: {phases}) | {args.trials} trials, "
        f"{args.images} probes of each kind | {search_s:.0f} |",
        "",
        f"The proxy-validity correlations were measured with {default_n} probes and {default_steps} Adam steps "
        f"(the search's default). Synthesis scales with images x steps, so at that setting it would take about "
        f"{synthesis_s * scale / 3600:.1f} h here (linear extrapolation, x{scale:.0f}, not measured), and each "
        f"trial about {default_n / args.images:.0f}x longer.",
    ]
    atomic_write_text(Path(args.out), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
