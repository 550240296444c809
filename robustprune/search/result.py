"""What a search returns and how it is saved: the pruned model, its spec, the step history and the front."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import ClassVar

from torch import nn

from robustprune._io import atomic_write_json
from robustprune.pruned import Cost, PruningResult
from robustprune.structure import PruneSpace, candidate_of, load_pruned, save_pruned


@dataclasses.dataclass
class StepRecord:
    """One committed step."""

    step: int
    target: dict
    amounts: dict[str, float]
    proxies: dict[str, float]
    score: float
    macs: int
    params: int
    kept_macs: float
    kept_params: float
    trials: int
    feasible_trials: int
    trial: int
    seconds: float


def pareto_front(points: list[dict], space: PruneSpace | None) -> list[dict]:
    """Non-dominated points over (compression, fidelity, robust fidelity), all maximised."""

    def key(p: dict) -> tuple[float, float, float]:
        return (
            1.0 - p["macs"] / space.full_macs if space else -p["macs"],
            p["proxies"]["fidelity"],
            p["proxies"]["robust_fidelity"],
        )

    front = []
    for p in points:
        kp = key(p)
        dominated = any(
            all(a >= b for a, b in zip(key(q), kp, strict=True)) and key(q) != kp for q in points if q is not p
        )
        if not dominated:
            front.append({**p, "compression": kp[0]})
    return sorted(front, key=lambda p: p["compression"])


@dataclasses.dataclass
class SearchResult(PruningResult):
    """A finished (or stopped) search (the interface it shares with ``PruneResult``: ``robustprune.pruned``)."""

    method: ClassVar[str] = "search"

    model: nn.Module  # physically pruned, compensation applied: a new object
    space: PruneSpace | None
    candidate: dict[str, tuple[int, ...]]
    amounts: dict[str, float]
    history: list[StepRecord]
    front: list[dict]
    config: object
    stop_reason: str
    target_reached: bool
    seconds: float
    probe_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    spec_data: dict | None = None
    criterion_scores: dict[str, float] = dataclasses.field(default_factory=dict)  # importance "auto": the choice
    latency_rounds: list[dict] = dataclasses.field(default_factory=list)  # a latency target: the timings after it

    def summary(self) -> dict:
        return {
            "stop_reason": self.stop_reason,
            "target_reached": self.target_reached,
            "seconds": self.seconds,
            "probe_seconds": self.probe_seconds,
            "criterion_scores": self.criterion_scores,
            "config": self.config.to_dict() if hasattr(self.config, "to_dict") else self.config,
        } | ({"latency_rounds": self.latency_rounds} if self.latency_rounds else {})

    def cost(self) -> Cost:
        if self.space is not None:
            macs, params = self.space.cost(self.candidate)
            return Cost(macs, params, self.space.full_macs, self.space.full_params)
        if self.spec_data is None:
            raise ValueError("this result has neither its prune space nor a saved spec: its cost is unknown")
        data = self.spec_data  # loaded from disk: the cost spec.json recorded
        return Cost(data["macs"], data["params"], data["original_macs"], data["original_params"])

    def details(self) -> dict:
        return self.summary()

    def save(self, directory: str | Path, model_ref: str | None = None) -> list[Path]:
        """Write pruned.pt, spec.json, history.json and front.json into ``directory``."""
        directory = Path(directory)
        if self.space is None:
            raise ValueError("this result was loaded from disk; it is already saved")
        written = list(save_pruned(directory, self.space, self.candidate, self.model, model_ref=model_ref))
        atomic_write_json(
            directory / "history.json", {**self.summary(), "steps": [dataclasses.asdict(s) for s in self.history]}
        )
        atomic_write_json(directory / "front.json", self.front)
        return [*written, directory / "history.json", directory / "front.json"]

    @classmethod
    def load(cls, directory: str | Path, build=None, trust_code: bool = False) -> SearchResult:
        """A saved run; ``build`` and ``trust_code`` as in ``load_pruned`` (factory references need an opt-in)."""
        directory = Path(directory)
        model, _spec, spec_data = load_pruned(directory, build=build, trust_code=trust_code)
        history = json.loads((directory / "history.json").read_text())
        front = json.loads((directory / "front.json").read_text())
        candidate = candidate_of(spec_data)
        steps = [StepRecord(**s) for s in history["steps"]]
        return cls(
            model=model,
            space=None,
            candidate=candidate,
            amounts=steps[-1].amounts if steps else {},
            history=steps,
            front=front,
            config=history["config"],
            stop_reason=history["stop_reason"],
            target_reached=history["target_reached"],
            seconds=history["seconds"],
            probe_seconds=history.get("probe_seconds", {}),
            criterion_scores=history.get("criterion_scores", {}),
            latency_rounds=history.get("latency_rounds", []),
            spec_data=spec_data,
        )
