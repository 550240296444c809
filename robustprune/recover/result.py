"""What recovery returns: the recovered model, the loss curve, and how to save and plot them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import nn

from robustprune._io import atomic_write_json, save_torch, staged_file
from robustprune.recover.config import RecoverConfig
from robustprune.structure import PruneSpace, save_pruned

SUMMARY_FILE = "recover.json"
PLOT_FILE = "recover_loss.png"


@dataclasses.dataclass
class RecoverResult:
    """``model``: a new module of the pruned model's shape (the input model is untouched).

    ``losses``: total loss per step; ``parts``: each loss term per step (unweighted).
    ``seconds``: wall time of the whole run, resumed parts included; ``pool_seconds``: of it,
    synthesizing the input pool. ``space`` / ``candidate``: set when the kept channels were
    given, so ``save`` writes a full run folder (spec.json too).
    """

    model: nn.Module
    losses: list[float]
    parts: dict[str, list[float]]
    seconds: float
    config: RecoverConfig
    pool_seconds: float = 0.0
    feature_layers: list[str] = dataclasses.field(default_factory=list)
    adapted_layers: list[str] = dataclasses.field(default_factory=list)
    resumed_from: int = 0
    device: str = "cpu"
    space: PruneSpace | None = None
    candidate: dict[str, tuple[int, ...]] | None = None

    def summary(self) -> dict:
        """A JSON-able account of the run (settings, timings, first/last loss)."""
        params = sum(p.numel() for p in self.model.parameters())
        return {
            "config": self.config.to_dict(),
            "steps": len(self.losses),
            "seconds": self.seconds,
            "pool_seconds": self.pool_seconds,
            "device": self.device,
            "resumed_from": self.resumed_from,
            "params": params,
            "feature_layers": self.feature_layers,
            "adapted_layers": self.adapted_layers,
            "loss_first": self.losses[0] if self.losses else None,
            "loss_last": self.losses[-1] if self.losses else None,
        }

    def save(self, directory: str | Path, model_ref: str | None = None) -> list[Path]:
        """Write pruned.pt (state dict), spec.json (when kept channels are known), recover.json, the loss plot."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        model = self.model
        if self.space is not None and self.candidate is not None:
            written = list(save_pruned(directory, self.space, self.candidate, model, model_ref=model_ref))
        else:
            weights = directory / "pruned.pt"
            save_torch(model.state_dict(), weights)
            written = [weights]
        atomic_write_json(directory / SUMMARY_FILE, {**self.summary(), "losses": self.losses, "parts": self.parts})
        written.append(directory / SUMMARY_FILE)
        written.append(self.plot(directory / PLOT_FILE))
        return written

    def plot(self, path: str | Path) -> Path:
        """The loss curve (total and each term, log scale) as a PNG at ``path``."""
        from matplotlib.figure import Figure  # outside pyplot: the caller's backend and figures stay as they are

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig = Figure(figsize=(5.0, 3.2))
        ax = fig.subplots()
        steps = range(1, len(self.losses) + 1)
        ax.plot(steps, self.losses, label="total", color="black", linewidth=1.2)
        for name, values in self.parts.items():
            ax.plot(steps, values, label=name, linewidth=0.8, alpha=0.8)
        if all(v > 0 for v in self.losses + [v for vs in self.parts.values() for v in vs]):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title("data-free recovery")
        ax.legend(fontsize=7)
        with staged_file(path) as tmp:
            fig.savefig(tmp, dpi=150, bbox_inches="tight")
        return path
