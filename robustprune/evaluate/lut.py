"""A latency model of pruned candidates: per-layer lookup tables over kept widths, measured once per
model architecture, device, thread count and batch size, and cached on disk.

Each conv/linear layer of the prune space is timed alone on a small grid of (input, output) widths
(its own shapes, kernel, stride and batch) and interpolated bilinearly in between. The prediction is
``s * (sum of the layer tables) + a + b * volume``, where volume is the kept fraction of the layers'
output activations (BN, activations, adds scale with it), ``a`` is fixed overhead (Python, pooling,
the head) and ``s`` corrects layers timed alone against layers inside the model; ``s, a, b >= 0`` are
fitted by least squares on whole-model timings of the original and of uniform widths (1/4, 1/2, 3/4
of every group). ``fraction(counts)`` is the prediction over the original's, the quantity a latency
target bounds. Wider layers are never predicted faster than narrower ones (each table is made
monotone), so a latency target stays a monotone constraint the search can bisect on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robustprune._io import atomic_write_json
from robustprune._progress import progress_bar
from robustprune.evaluate.speed import compile_for, interleaved_latency, torch_threads
from robustprune.structure.layers import CONV_TYPES
from robustprune.structure.space import PruneSpace

__all__ = ["LUT_VERSION", "CorrectedLatency", "LatencyModel", "LayerTable", "build_latency_model", "latency_grid"]

LUT_VERSION = 3
#: Grid of kept fractions per pruned dimension (the widths are rounded, at least one channel).
GRID_FRACTIONS = (0.125, 0.25, 0.5, 0.75, 1.0)


def latency_grid(size: int, multiple: int = 1) -> list[int]:
    """The kept widths a pruned dimension of ``size`` channels is timed at (multiples of ``multiple``: a
    grouped conv's widths are whole numbers of channels per group)."""
    return sorted({multiple * max(1, round(f * size / multiple)) for f in GRID_FRACTIONS})


@dataclasses.dataclass(frozen=True)
class LayerTable:
    """Milliseconds of one layer at each (kept input width, kept output width) of its grid."""

    name: str
    in_group: int | None
    out_group: int | None
    in_grid: tuple[int, ...]
    out_grid: tuple[int, ...]
    ms: tuple[tuple[float, ...], ...]  # [in index][out index]

    def predict(self, n_in: int, n_out: int) -> float:
        table = np.asarray(self.ms)
        per_in = [float(np.interp(n_out, self.out_grid, row)) for row in table]
        return float(np.interp(n_in, self.in_grid, per_in))


@dataclasses.dataclass(frozen=True)
class LatencyModel:
    """Predicted latency of a candidate (kept channels per group, in the space's group order)."""

    tables: tuple[LayerTable, ...]
    volumes: tuple[tuple[int | None, int], ...]  # (out group, activation elements at full width) per layer
    sizes: tuple[int, ...]  # full group sizes
    rest_fixed_ms: float
    rest_volume_ms: float
    layer_scale: float  # calibration of the summed layer tables against whole-model timings
    measured_full_ms: float  # the original model, timed whole
    meta: dict

    def predict_ms(self, counts: Sequence[int]) -> float:
        """Milliseconds for one forward pass of the candidate with ``counts`` kept channels per group."""
        total = 0.0
        for t in self.tables:
            n_in = counts[t.in_group] if t.in_group is not None else t.in_grid[-1]
            n_out = counts[t.out_group] if t.out_group is not None else t.out_grid[-1]
            total += t.predict(n_in, n_out)
        return self.layer_scale * total + self.rest_fixed_ms + self.rest_volume_ms * self.volume(counts)

    def volume(self, counts: Sequence[int]) -> float:
        """Kept fraction of the layers' output activations."""
        full = sum(v for _, v in self.volumes) or 1
        kept = sum(v * (counts[g] / self.sizes[g] if g is not None else 1.0) for g, v in self.volumes)
        return kept / full

    def fraction(self, counts: Sequence[int]) -> float:
        """Predicted latency as a fraction of the original's (exactly 1 at full width)."""
        return self.predict_ms(counts) / self.predict_ms(self.sizes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LatencyModel:
        tables = tuple(
            LayerTable(
                name=t["name"],
                in_group=t["in_group"],
                out_group=t["out_group"],
                in_grid=tuple(t["in_grid"]),
                out_grid=tuple(t["out_grid"]),
                ms=tuple(tuple(row) for row in t["ms"]),
            )
            for t in data["tables"]
        )
        return cls(
            tables=tables,
            volumes=tuple((g, v) for g, v in data["volumes"]),
            sizes=tuple(data["sizes"]),
            rest_fixed_ms=data["rest_fixed_ms"],
            rest_volume_ms=data["rest_volume_ms"],
            layer_scale=data["layer_scale"],
            measured_full_ms=data["measured_full_ms"],
            meta=data["meta"],
        )


def _input_shapes(space: PruneSpace) -> dict[str, tuple[int, ...]]:
    """Per conv/linear layer of the space, the shape (without batch) of its input at full width."""
    modules = dict(space.model.named_modules())
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(_module, inputs, _output) -> None:  # returns None: the output is left as it is
            shapes.setdefault(name, tuple(inputs[0].shape[1:]))

        return hook

    hooks = [
        modules[layer.name].register_forward_hook(record(layer.name)) for layer in space._layers if layer.kind != "norm"
    ]
    try:
        with torch.no_grad():
            was_training = space.model.training
            space.model.eval()
            space.model(torch.zeros(1, *space.spec.shape, device=space.device))
            space.model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    return shapes


def _layer_at(
    module: nn.Module, in_shape: tuple[int, ...], n_in: int, n_out: int, mult: int, depthwise: bool, groups: int = 1
):
    """A fresh layer like ``module`` with ``n_in`` (x ``mult``) inputs and ``n_out`` outputs, and its input shape
    (a grouped conv keeps its ``groups``)."""
    if isinstance(module, nn.Linear):
        layer = nn.Linear(n_in * mult, n_out, bias=module.bias is not None)
        return layer, (*in_shape[:-1], n_in * mult)
    conv = next(base for base in CONV_TYPES if isinstance(module, base))  # a subclass's __init__ may differ
    channels_in = n_out if depthwise else n_in * mult
    layer = conv(
        channels_in,
        n_out,
        module.kernel_size,
        stride=module.stride,
        padding=module.padding,
        dilation=module.dilation,
        groups=n_out if depthwise else groups,
        bias=module.bias is not None,
        padding_mode=module.padding_mode,
    )
    return layer, (channels_in, *in_shape[1:])


def _time_ms(module: nn.Module, shape: tuple[int, ...], batch: int, device, runs: int) -> float:
    module = module.to(device).eval()
    x = torch.randn(batch, *shape, device=device)

    def run() -> None:
        with torch.no_grad():
            module(x)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


def _monotone(table: np.ndarray) -> np.ndarray:
    """Running maximum along both axes: a wider layer is never faster than a narrower one (timing noise)."""
    return np.maximum.accumulate(np.maximum.accumulate(table, axis=0), axis=1)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _signature(space: PruneSpace, layer, module: nn.Module, in_shape: tuple[int, ...]) -> dict:
    """What decides a layer's table: its type, shapes and which of its dimensions are pruned."""
    hyper = {}
    if not isinstance(module, nn.Linear):
        hyper = {k: list(getattr(module, k)) for k in ("kernel_size", "stride", "padding", "dilation")}
    return {
        "type": type(module).__name__,
        "in": layer.in_full,
        "out": layer.out_full,
        "mult": layer.in_mult,
        "in_pruned": layer.in_group is not None,
        "out_pruned": layer.out_group is not None,
        "depthwise": layer.depthwise,
        "bias": layer.bias,
        "input": list(in_shape),
        **hyper,
        **({"groups": layer.groups} if layer.groups > 1 else {}),  # absent for other layers: their keys stay
    }


@dataclasses.dataclass(frozen=True)
class CorrectedLatency:
    """A latency prediction scaled so that it equals a timed candidate's: ``scale * base.fraction(counts)``,
    still monotone. Near that candidate the table's error is treated as proportional to the latency
    (why not a rescaled saving: docs/speed.md, "The timed loop")."""

    base: object  # a latency predictor: ``fraction(counts)``
    scale: float

    @classmethod
    def matching(cls, base, predicted: float, measured: float) -> CorrectedLatency:
        """``base`` corrected so that the candidate it predicted at ``predicted`` comes out at ``measured``."""
        if not predicted > 0.0 or not measured > 0.0:
            raise ValueError(f"need predicted and measured fractions > 0, got {predicted}, {measured}")
        return cls(base, measured / predicted)

    def fraction(self, counts: Sequence[int]) -> float:
        return self.scale * self.base.fraction(counts)


def build_latency_model(
    space: PruneSpace,
    batch_size: int = 1,
    threads: int | None = None,
    cache_dir: str | Path | None = None,
    runs: int = 10,
    whole_runs: int = 20,
    progress: Callable[[str], None] | None = None,
    quiet: bool = True,
) -> LatencyModel:
    """Measure (or load from ``cache_dir``) the latency model of ``space``'s model at ``batch_size``.

    The cache key covers the architecture (layer shapes, groups; not the weights), the device,
    the CPU, the thread count, the batch size and the torch version.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(space.device)
    with torch_threads(threads):
        n_threads = torch.get_num_threads()
        in_shapes = _input_shapes(space)
        modules = dict(space.model.named_modules())
        layers = [layer for layer in space._layers if layer.kind != "norm"]
        signatures = [_signature(space, layer, modules[layer.name], in_shapes[layer.name]) for layer in layers]
        meta = {
            "lut_version": LUT_VERSION,
            "spec": space.spec.to_dict(),
            "groups": [g.size for g in space.groups],
            "layers": signatures,
            "batch_size": batch_size,
            "threads": n_threads,
            "device": str(device),
            "cpu": _cpu_name() if device.type == "cpu" else torch.cuda.get_device_name(device),
            "torch": torch.__version__,
        }
        key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:24]
        path = _cache_path(cache_dir, key)
        if path is not None and path.is_file():
            try:
                cached = LatencyModel.from_dict(json.loads(path.read_text()))
                if cached.meta.get("key") == key:
                    return cached
            except (ValueError, KeyError, TypeError):
                pass  # unreadable or old: measure again and overwrite
        if progress:
            progress(f"measuring the latency model ({len(layers)} layers, batch {batch_size}, {n_threads} threads)")
        model = _measure(space, layers, signatures, in_shapes, batch_size, runs, whole_runs, quiet)
        meta = json.loads(json.dumps({**meta, "key": key, "measured_at": time.time()}))  # as a reload sees it
        model = dataclasses.replace(model, meta=meta)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, model.to_dict())
    return model


def _cache_path(cache_dir: str | Path | None, key: str) -> Path | None:
    from robustprune.probes.cache import default_cache_dir

    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return base / "latency" / f"lut-{key}.json"


def _measure(space, layers, signatures, in_shapes, batch_size, runs, whole_runs, quiet) -> LatencyModel:
    modules = dict(space.model.named_modules())
    measured: dict[str, list[list[float]]] = {}
    grids = []
    for layer in layers:
        in_grid = latency_grid(layer.in_full, layer.groups) if layer.in_group is not None else [layer.in_full]
        out_grid = latency_grid(layer.out_full, layer.groups) if layer.out_group is not None else [layer.out_full]
        grids.append((in_grid, out_grid))
    unique = {json.dumps(s, sort_keys=True): i for i, s in enumerate(signatures)}
    bar = progress_bar(
        sum(len(grids[i][0]) * len(grids[i][1]) for i in unique.values()), "latency table", quiet=quiet, unit="shape"
    )
    for sig, i in unique.items():
        layer, (in_grid, out_grid) = layers[i], grids[i]
        table = np.zeros((len(in_grid), len(out_grid)))
        for a, n_in in enumerate(in_grid):
            for b, n_out in enumerate(out_grid):
                module, shape = _layer_at(
                    modules[layer.name],
                    in_shapes[layer.name],
                    n_in,
                    n_out,
                    layer.in_mult,
                    layer.depthwise,
                    layer.groups,
                )
                table[a, b] = _time_ms(module, shape, batch_size, space.device, runs)
                bar.update(1)
        measured[sig] = _monotone(table).tolist()
    bar.close()
    tables = tuple(
        LayerTable(
            name=layer.name,
            in_group=layer.in_group,
            out_group=layer.out_group,
            in_grid=tuple(in_grid),
            out_grid=tuple(out_grid),
            ms=tuple(tuple(row) for row in measured[json.dumps(sig, sort_keys=True)]),
        )
        for layer, sig, (in_grid, out_grid) in zip(layers, signatures, grids, strict=True)
    )
    volumes = tuple(
        (layer.out_group, layer.positions * layer.out_full) for layer in space._layers if layer.kind != "norm"
    )
    sizes = tuple(g.size for g in space.groups)
    partial = LatencyModel(tables, volumes, sizes, 0.0, 0.0, 1.0, 0.0, {})
    widths = {f: [max(1, round(f * s)) for s in sizes] for f in CALIBRATION_FRACTIONS}
    whole = _whole_model_ms(space, widths, batch_size, whole_runs)
    scale, fixed, per_volume = _fit_calibration(
        [partial.predict_ms(widths[f]) for f in CALIBRATION_FRACTIONS],
        [partial.volume(widths[f]) for f in CALIBRATION_FRACTIONS],
        [whole[f] for f in CALIBRATION_FRACTIONS],
    )
    return LatencyModel(tables, volumes, sizes, fixed, per_volume, scale, whole[1.0], {})


#: Uniform widths (kept fraction of every group) the whole model is timed at to fit the calibration.
CALIBRATION_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def _fit_calibration(layers_ms: list[float], volumes: list[float], whole_ms: list[float]) -> tuple[float, float, float]:
    """Non-negative least squares ``whole = s * layers + a + b * volume``.

    ``s`` absorbs a systematic gap between layers timed alone and inside the model (caches, allocator);
    ``a`` is fixed overhead, ``b`` the element-wise work that scales with the activations.
    """
    from scipy.optimize import nnls

    design = np.stack([np.asarray(layers_ms), np.ones(len(volumes)), np.asarray(volumes)], axis=1)
    target = np.asarray(whole_ms)
    norms = design.max(axis=0)  # column scaling keeps the problem well conditioned
    norms[norms == 0] = 1.0
    coef, _residual = nnls(design / norms, target)
    s, a, b = (coef / norms).tolist()
    if s <= 0:  # degenerate fit (noise): fall back to the tables alone, scaled to the original's time
        s, a, b = whole_ms[-1] / max(layers_ms[-1], 1e-9), 0.0, 0.0
    return float(s), float(a), float(b)


def _whole_model_ms(space: PruneSpace, widths: dict[float, list[int]], batch_size: int, runs: int) -> dict:
    """Interleaved medians of the model at each uniform width (first channels kept: only widths matter)."""
    from robustprune.structure import export

    runners = {}
    for fraction, counts in widths.items():
        candidate = {g.name: _first(g.size, n, g.blocks) for g, n in zip(space.groups, counts, strict=True)}
        model = space.model if fraction == 1.0 else export(space, candidate)
        runners[fraction] = compile_for(model, space.spec, batch_size)
    stats = interleaved_latency(runners, runs=runs, warmup=3)
    return {fraction: s.median_ms for fraction, s in stats.items()}


def _first(size: int, count: int, blocks: int) -> tuple[int, ...]:
    """The first ``count`` channels, or for a group split into blocks the first ``count // blocks`` of each."""
    per, width = max(1, count // blocks), size // blocks
    return tuple(b * width + j for b in range(blocks) for j in range(per))
