"""Quick sanity check of data-free recovery (not a published result): validation accuracy before -> after.

resnet20 pruned by ``l1_uniform`` to half its MACs, BN statistics re-estimated on the
synthetic pool (the fair "before"), then ``recover`` on that pool for a small budget.
Validation split only: Fashion-MNIST train[55000:]; the test set is never read.

    python -m benchmarks.recover --sanity --steps 150 --batch-size 64 --pool 256 --synth-steps 100
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import time

import torch

import robustprune as rp
from robustprune.data.fashion_mnist import load_eval_split
from robustprune.evaluate.metrics import accuracy, predict_logits
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.recover import RecoverConfig, recover
from robustprune.recover.inputs import synthetic_pool


def bn_reestimated(model: torch.nn.Module, spec: rp.InputSpec, pixels: torch.Tensor) -> torch.nn.Module:
    """A copy whose BN running statistics are the exact averages over ``pixels`` (one batch, train mode)."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(spec.normalize(pixels))
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.1
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.recover --sanity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--target-macs", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pool", type=int, default=256)
    parser.add_argument("--synth-steps", type=int, default=100)
    parser.add_argument("--expand", type=int, default=4)
    parser.add_argument("--adv-fraction", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, spec = rp.zoo.load(args.model)
    val_x, val_y = load_eval_split("val")

    def val(m: torch.nn.Module) -> float:
        return accuracy(predict_logits(m, spec, val_x), val_y)

    config = RecoverConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        pool_size=args.pool,
        synthetic=SyntheticConfig(steps=args.synth_steps),
        expand=args.expand,
        adv_fraction=args.adv_fraction,
    )
    pruned = rp.baseline(model, spec, "l1_uniform", target_macs=args.target_macs)
    t = time.perf_counter()
    cache = pathlib.Path(args.out) if args.out else None  # recovery reads the pool made here from this cache
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    pool, _ = synthetic_pool(model, spec, config, device=torch.device("cpu"), cache_dir=cache)
    pool_seconds = time.perf_counter() - t
    before = bn_reestimated(pruned.model, spec, pool)
    row = {"original": val(model), "pruned": val(pruned.model), "pruned_bn": val(before), "pool_seconds": pool_seconds}
    print(json.dumps(row), flush=True)
    result = recover(before, model, spec, config, candidate=pruned.candidate, checkpoint_dir=cache, log=print)
    row.update({"recovered": val(result.model), "recover_seconds": result.seconds, "config": config.to_dict()})
    print(json.dumps(row), flush=True)
    if args.out:
        result.save(args.out, model_ref=f"zoo:{args.model}")
