"""Train the reference zoo on Fashion-MNIST, reproducibly, on the CPU.

    python -m benchmarks.train_zoo                 # all models
    python -m benchmarks.train_zoo --models cnn    # one

Schedule: SGD, Nesterov momentum 0.9, weight decay 5e-4, batch 128, one-cycle
learning rate peaking at 0.1 (0.05 for mlp), fixed seed 0. The BatchNorm-free
convnext trains with AdamW instead (weight decay 0.05, one-cycle peak 3e-3), the
usual ConvNeXt recipe. Training uses the first 55,000 training images;
train[55000:] is held out as a validation split for choosing search settings
without touching the test set. Conv models see random 2-pixel shifts and
horizontal flips. Writes
robustprune/zoo/checkpoints/NAME.pt (state dict) and updates manifest.json with
the test accuracy, command, commit, machine and wall time.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from benchmarks._common import start
from robustprune._provenance import provenance
from robustprune.data.fashion_mnist import TRAIN_IMAGES, load_fashion_mnist
from robustprune.zoo import CHECKPOINT_DIR, FASHION_MNIST_SPEC, MANIFEST_PATH, build, names

EPOCHS = {"mlp": 15, "cnn": 5, "resnet20": 5, "vgg11_bn": 10, "mobilenetv2": 6, "inception": 4, "convnext": 8}
PEAK_LR = {"mlp": 0.05, "convnext": 3e-3}
ADAMW = {"convnext"}  # models trained with AdamW; the rest use SGD
TRAIN_SIZE = TRAIN_IMAGES  # train[55000:] is the validation split
BATCH = 128


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shift by up to 2 pixels (zero padding) and random horizontal flip."""
    n = x.shape[0]
    padded = F.pad(x, (2, 2, 2, 2))
    dx = torch.randint(0, 5, (n,), generator=gen)
    dy = torch.randint(0, 5, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(28)[None, :])[:, None, :, None].expand(n, 1, 28, 32)
    shifted = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(28)[None, :])[:, None, None, :].expand(n, 1, 28, 28)
    shifted = shifted.gather(3, cols)
    flip = torch.rand(n, generator=gen) < 0.5
    shifted[flip] = shifted[flip].flip(3)
    return shifted


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), 1000):
        correct += (model(FASHION_MNIST_SPEC.normalize(x[i : i + 1000])).argmax(1) == y[i : i + 1000]).sum().item()
    return correct / len(x)


def make_optimizer(name: str, model: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW for the models in ADAMW, Nesterov SGD for the rest; OneCycleLR sets the learning rate."""
    if name in ADAMW:
        return torch.optim.AdamW(model.parameters(), lr=PEAK_LR[name], weight_decay=0.05)
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)


def train(name: str, seed: int, command: str, log=print) -> dict:
    started = provenance()  # the commit that trains, recorded before the run (a long run may outlive it)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_all, y_all = load_fashion_mnist("train")
    x_train, y_train = x_all[:TRAIN_SIZE], y_all[:TRAIN_SIZE]
    x_val, y_val = x_all[TRAIN_SIZE:], y_all[TRAIN_SIZE:]
    x_test, y_test = load_fashion_mnist("test")
    model = build(name)
    epochs = EPOCHS[name]
    steps_per_epoch = (TRAIN_SIZE + BATCH - 1) // BATCH
    opt = make_optimizer(name, model)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, PEAK_LR.get(name, 0.1), total_steps=epochs * steps_per_epoch)
    start = time.time()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(TRAIN_SIZE, generator=gen)
        total = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * BATCH : (step + 1) * BATCH]
            xb = x_train[idx]
            if name != "mlp":
                xb = augment(xb, gen)
            loss = F.cross_entropy(model(FASHION_MNIST_SPEC.normalize(xb)), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        val = accuracy(model, x_val, y_val)
        log(
            f"[{name}] epoch {epoch + 1}/{epochs}: loss {total / steps_per_epoch:.4f}, "
            f"val acc {val:.4f}, {time.time() - start:.0f}s"
        )
    model.eval()
    test_acc = accuracy(model, x_test, y_test)
    CHECKPOINT_DIR.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), CHECKPOINT_DIR / f"{name}.pt")
    entry = {
        "test_accuracy": test_acc,
        "val_accuracy": accuracy(model, x_val, y_val),
        "epochs": epochs,
        "seed": seed,
        "train_images": TRAIN_SIZE,
        "wall_seconds": round(time.time() - start, 1),
        "command": command,
        "provenance": started,
    }
    log(f"[{name}] test accuracy {test_acc:.4f}")
    return entry


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=names(), choices=names())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    command = start("train_zoo", argv, args.threads)
    torch.use_deterministic_algorithms(True)
    for name in args.models:
        entry = train(name, args.seed, command)
        manifest = json.loads(MANIFEST_PATH.read_text()) if MANIFEST_PATH.is_file() else {}
        manifest[name] = entry
        MANIFEST_PATH.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
