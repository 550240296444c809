"""Figures for search runs and method comparisons (matplotlib, PNG and SVG, sized for a paper column)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from matplotlib.figure import Figure

from robustprune._io import PLOT_NAMES, PLOT_SUFFIXES, staged_file

COLUMN = (3.5, 2.6)  # inches: one paper column
WIDE = (7.0, 2.8)


def _figure(size: tuple[float, float], **kwargs) -> Figure:
    """A figure outside pyplot: drawing never changes the caller's matplotlib backend or open figures."""
    return Figure(figsize=size, **kwargs)


def _save(fig, path: Path) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in PLOT_SUFFIXES:
        target = path.with_suffix(suffix)
        with staged_file(target) as tmp:  # two runs summarizing into one folder must not share a temp name
            fig.savefig(tmp, dpi=200, bbox_inches="tight")
        written.append(target)
    return written


def _load_run(run: str | Path | Mapping) -> tuple[dict, list[dict], dict]:
    """(history, front, spec) of a run folder (or of already-loaded dicts)."""
    if isinstance(run, Mapping):
        return run["history"], run["front"], run.get("spec", {})
    run = Path(run)
    history = json.loads((run / "history.json").read_text())
    front = json.loads((run / "front.json").read_text())
    spec = json.loads((run / "spec.json").read_text())
    return history, front, spec


def plot_search_front(run, path: str | Path, label: str | None = None) -> list[Path]:
    """The search's candidates in proxy space: MAC reduction vs fidelity and vs robust fidelity."""
    _history, front, _spec = _load_run(run)
    fig = _figure(WIDE, layout="constrained")
    axes = fig.subplots(1, 2, sharex=True)
    x = [100 * p["compression"] for p in front]
    for ax, key, name in (
        (axes[0], "fidelity", "fidelity (synthetic)"),
        (axes[1], "robust_fidelity", "robust fidelity (adversarial)"),
    ):
        # a 3-objective front (compression, fidelity, robust fidelity) seen in 2-D: points, not a line
        ax.plot(x, [p["proxies"][key] for p in front], "o", ms=3, label=label or "Pareto-optimal candidates")
        ax.set_xlabel("MAC reduction (%)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower left", fontsize=7, frameon=False)
    fig.suptitle("Search front (proxies, no real data)", fontsize=9)
    return _save(fig, Path(path))


def plot_step_trace(run, path: str | Path) -> list[Path]:
    """Per step: the MAC target and what was committed, and the committed proxies."""
    history, _front, _spec = _load_run(run)
    steps = history["steps"]
    k = [s["step"] for s in steps]
    fig = _figure(WIDE, layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    # a step's MAC or params target; a latency-only target (ms against a table) is not on this axis
    targets = [
        s["target"].get("macs") if s["target"].get("macs") is not None else s["target"].get("params") for s in steps
    ]
    if all(t is not None for t in targets):
        ax1.plot(k, [100 * t for t in targets], "s--", ms=3, lw=1, label="step target")
    ax1.plot(k, [100 * s["kept_macs"] for s in steps], "o-", ms=3, lw=1, label="MACs kept")
    ax1.plot(k, [100 * s["kept_params"] for s in steps], "^-", ms=3, lw=1, label="params kept")
    ax1.set_xlabel("step")
    ax1.set_ylabel("% of original")
    ax1.legend(fontsize=7, frameon=False)
    for key in ("fidelity", "robust_fidelity", "feature_sp"):
        ax2.plot(k, [s["proxies"][key] for s in steps], "o-", ms=3, lw=1, label=key)
    ax2.set_xlabel("step")
    ax2.set_ylabel("proxy value")
    ax2.legend(fontsize=7, frameon=False)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.set_xticks(k)
    return _save(fig, Path(path))


def plot_group_amounts(run, path: str | Path) -> list[Path]:
    """Fraction of channels removed per group by the search, against the uniform fraction with the same MACs."""
    _history, _front, spec = _load_run(run)
    groups = spec["groups"]
    names = list(groups)
    removed = [1 - len(g["keep"]) / g["size"] for g in groups.values()]
    total = sum(g["size"] for g in groups.values())
    uniform = 1 - sum(len(g["keep"]) for g in groups.values()) / total
    fig = _figure((max(3.5, 0.28 * len(names) + 1), 2.8))
    ax = fig.subplots()
    ax.bar(range(len(names)), [100 * r for r in removed], color="tab:blue", label="search")
    ax.axhline(100 * uniform, color="tab:red", ls="--", lw=1, label="same channel share, uniform")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=70, ha="right", fontsize=6)
    ax.set_ylabel("channels removed (%)")
    ax.set_xlabel("channel group (first member module)")
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, Path(path))


def plot_run(run: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """All figures of a search run folder into ``out_dir`` (default: RUN/plots)."""
    out = Path(out_dir) if out_dir else Path(run) / "plots"
    front, steps, amounts = (out / name for name in PLOT_NAMES)  # the names a run folder's owner list knows
    return [*plot_search_front(run, front), *plot_step_trace(run, steps), *plot_group_amounts(run, amounts)]


def plot_methods(
    rows: Iterable[Mapping], path: str | Path, title: str = "", originals: Mapping[str, Mapping] | None = None
) -> list[Path]:
    """Real-data accuracy vs MAC reduction, one series per method; rows need keys
    method, kept_macs, clean_accuracy, pgd (fractions). ``originals``: {"clean_accuracy", "pgd"} reference lines."""
    rows = list(rows)
    fig = _figure((WIDE[0], WIDE[1] + 0.6), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True)
    methods = sorted({r["method"] for r in rows}, key=lambda m: (m != "search", m))
    markers = "os^vD<>p*"
    for i, method in enumerate(methods):
        sel = sorted((r for r in rows if r["method"] == method), key=lambda r: r["kept_macs"])
        x = [100 * (1 - r["kept_macs"]) for r in sel]
        for ax, key in ((axes[0], "clean_accuracy"), (axes[1], "pgd")):
            ax.plot(x, [100 * r[key] for r in sel], marker=markers[i % len(markers)], ms=4, lw=1, label=method)
    for ax, key, name in (
        (axes[0], "clean_accuracy", "clean accuracy (%)"),
        (axes[1], "pgd", "PGD robust accuracy (%)"),
    ):
        if originals and originals.get(key) is not None:
            ax.axhline(100 * originals[key], color="black", ls=":", lw=1, label="original")
        ax.set_xlabel("MAC reduction (%)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    # below the panels: with many methods an in-axes legend covers the collapsed baselines' points
    fig.legend(handles, labels, fontsize=7, frameon=False, loc="outside lower center", ncol=min(5, len(labels)))
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, Path(path))


def plot_compare(runs: list[str | Path], path: str | Path) -> list[Path]:
    """Several search runs' fronts on one figure (label = run folder name)."""
    fig = _figure(WIDE, layout="constrained")
    axes = fig.subplots(1, 2, sharex=True)
    for run in runs:
        _history, front, _spec = _load_run(run)
        x = [100 * p["compression"] for p in front]
        for ax, key in ((axes[0], "fidelity"), (axes[1], "robust_fidelity")):
            ax.plot(x, [p["proxies"][key] for p in front], "o", ms=3, label=Path(run).name)
    for ax, name in ((axes[0], "fidelity (synthetic)"), (axes[1], "robust fidelity (adversarial)")):
        ax.set_xlabel("MAC reduction (%)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, frameon=False, loc="lower left")
    return _save(fig, Path(path))
