"""``recover``: distill a pruned model from its original on synthetic inputs (the opt-in stage that changes weights)."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from robustprune._progress import progress_bar
from robustprune.probes.cache import weights_hash
from robustprune.recover.checkpoint import hold_folder, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from robustprune.recover.config import RecoverConfig
from robustprune.recover.features import FeatureLayerError, captured, kept_channels, resolve_feature_layers
from robustprune.recover.inputs import fresh_batch, mix_adversarial, pool_batch, synthetic_pool
from robustprune.recover.losses import adapter_key, feature_loss, kd_loss, make_adapter, sp_loss
from robustprune.recover.overparam import expand_model, merge_model
from robustprune.recover.result import RecoverResult
from robustprune.spec import InputSpec, validate_model
from robustprune.structure.space import PruneSpace


class RecoveryDivergedError(FloatingPointError):
    """The distillation loss became NaN or infinite; the message names the settings that bring it back."""


def _device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA device is available")
    return device


def _module_device(model: nn.Module) -> torch.device:
    return next((t.device for t in list(model.parameters()) + list(model.buffers())), torch.device("cpu"))


def _set_mode(student: nn.Module, bn: str) -> None:
    """Train mode; BatchNorm in eval mode (running statistics kept) when ``bn == 'frozen'``."""
    student.train()
    if bn == "frozen":
        for m in student.modules():
            if isinstance(m, _BatchNorm):
                m.eval()


def _feature_plan(
    student: nn.Module,
    teacher: nn.Module,
    spec: InputSpec,
    layers: list[str],
    kept: dict[str, list[int]],
    device: torch.device,
    seed: int,
    named: bool,
) -> tuple[list[str], dict[str, int], nn.ModuleDict]:
    """Per feature layer, how the pruned model's output meets the original's: the channel axis (the one
    axis where their shapes differ, 1 where none does) and a 1x1 adapter where the kept channels are unknown.
    ``kept`` loses the layers compared through an adapter. A layer whose outputs differ on more than the channel
    axis cannot be compared: an error where the user ``named`` it, left out where it was chosen automatically.
    Returns (the layers compared, their channel axes, the adapters)."""
    example = torch.zeros(2, *spec.shape, device=device)
    modes = [(m, m.training) for m in student.modules()]
    student.eval()
    try:
        with torch.no_grad(), captured(student, layers) as s, captured(teacher, layers) as t:
            student(example)
            teacher(example)
    finally:
        for m, flag in modes:
            m.training = flag
    gen = torch.Generator().manual_seed(seed)
    compared, axes, adapters = [], {}, nn.ModuleDict()
    for name in layers:
        s_shape, t_shape = tuple(s[name].shape), tuple(t[name].shape)
        differ = [i for i, (a, b) in enumerate(zip(s_shape, t_shape, strict=False)) if a != b]
        if len(s_shape) != len(t_shape) or len(differ) > 1 or differ == [0]:
            if named:
                raise FeatureLayerError(
                    f"feature layer {name!r} gives outputs of shape {s_shape} in the pruned model and {t_shape} in "
                    "the original, which differ on more than one channel axis; name other feature layers"
                )
            kept.pop(name, None)
            continue
        axis = differ[0] if differ else 1
        compared.append(name)
        axes[name] = axis
        if name in kept and len(kept[name]) == s_shape[axis]:
            continue
        kept.pop(name, None)
        if differ:
            adapters[adapter_key(name)] = make_adapter(s_shape[axis], t_shape[axis], len(s_shape), gen, axis)
    return compared, axes, adapters.to(device)


def _batch(
    step: int,
    pool: torch.Tensor | None,
    teacher: nn.Module,
    spec: InputSpec,
    config: RecoverConfig,
    gen: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """The pixel-space batch of ``step`` (CPU)."""
    x = pool_batch(pool, spec, config, gen) if pool is not None else fresh_batch(teacher, spec, config, step, device)
    if config.adv_fraction > 0:
        x = mix_adversarial(teacher, spec, x, config, step, device)
    return x


def _losses(
    student: nn.Module,
    teacher: nn.Module,
    inputs: torch.Tensor,
    layers: list[str],
    kept: dict[str, list[int]],
    axes: dict[str, int],
    adapters: nn.ModuleDict,
    config: RecoverConfig,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(weighted total, unweighted terms) for one batch of normalized inputs."""
    with torch.no_grad(), captured(teacher, layers) as t_feats:
        t_logits = teacher(inputs)
    with captured(student, layers) as s_feats:
        s_logits = student(inputs)
    parts: dict[str, torch.Tensor] = {}
    total = s_logits.new_zeros((), dtype=torch.float32)
    if config.kd_weight > 0:
        parts["kd"] = kd_loss(s_logits, t_logits, config.temperature)
        total = total + config.kd_weight * parts["kd"]
    if layers and config.feature_weight > 0:
        parts["feature"] = feature_loss(s_feats, t_feats, layers, kept, adapters, axes)
        total = total + config.feature_weight * parts["feature"]
    if layers and config.sp_weight > 0:
        parts["sp"] = sp_loss([s_feats[n] for n in layers], [t_feats[n] for n in layers])
        total = total + config.sp_weight * parts["sp"]
    return total, parts


def _tensor_hash(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()


def _lr(config: RecoverConfig, step: int) -> float:
    """Cosine decay from ``lr`` (step 1) toward 0 (after the last step)."""
    return config.lr * 0.5 * (1 + math.cos(math.pi * (step - 1) / config.steps))


def recover(
    pruned: nn.Module,
    original: nn.Module,
    spec: InputSpec,
    config: RecoverConfig | None = None,
    *,
    candidate: Mapping[str, Sequence[int]] | None = None,
    exclude: Iterable[str] = (),
    device: str | torch.device = "cpu",
    checkpoint_dir: str | Path | None = None,
    pool: torch.Tensor | None = None,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
) -> RecoverResult:
    """Distill ``pruned`` from ``original`` on synthetic inputs only; returns a new model (``pruned`` is untouched).

    ``candidate`` (group name -> kept channel indices of the original, as in a run folder's
    spec.json ``groups[...]["keep"]`` or ``SearchResult.candidate``) and ``exclude`` (the
    search's excluded modules) tell which original channels each feature map kept; without
    them, feature layers that changed width are compared through a learned 1x1 adapter.
    ``device``: where to train ("cpu" or "cuda"); the result lives on ``pruned``'s device.
    ``checkpoint_dir``: a checkpoint is written there every ``config.checkpoint_every``
    steps (and the input pool cached); calling again with the same folder and settings
    resumes from it. ``pool``: pixel-space inputs (N, *spec.shape) to draw the batches from
    instead of the synthesized pool (``config.inputs`` must be "pool"), e.g. real images for an
    upper bound; recovery stays data-free only without it. ``log`` receives about twenty
    progress lines; ``quiet`` hides the bar.
    Deterministic: the same seed gives the same weights (bit-identical on the CPU).
    """
    config = config or RecoverConfig()
    if not isinstance(config, RecoverConfig):
        raise TypeError(f"config must be a RecoverConfig, got {type(config).__name__}")
    run_on = _device(device)
    validate_model(pruned, spec)
    validate_model(original, spec)
    if pool is not None:
        if config.inputs != "pool":
            raise ValueError(f"a given pool needs RecoverConfig.inputs='pool', got {config.inputs!r}")
        if pool.dim() != len(spec.shape) + 1 or tuple(pool.shape[1:]) != tuple(spec.shape) or len(pool) == 0:
            raise ValueError(f"pool must be (N, {', '.join(map(str, spec.shape))}) pixels, got {tuple(pool.shape)}")
        pool = pool.detach().float().cpu()
    say = log or (lambda _line: None)
    start_time = time.perf_counter()
    home = _module_device(pruned)
    teacher = copy.deepcopy(original).to(run_on).eval().requires_grad_(False)
    student = copy.deepcopy(pruned).to(run_on).requires_grad_(True)
    # new layers draw their default init from the global generator before their seeded weights replace it:
    # forked, so the caller's random state is left as it was
    with torch.random.fork_rng(devices=[run_on] if run_on.type == "cuda" else []):
        if config.expand > 1:
            student = expand_model(student, config.expand, seed=config.seed)

        active = config.feature_weight > 0 or config.sp_weight > 0
        layers = resolve_feature_layers(config.features, student, teacher) if active else []
        # maps the already exported candidate's kept channels; the search that found it verified the space
        space = PruneSpace(original, spec, exclude=exclude, verify=False) if candidate is not None else None
        kept = kept_channels(space, candidate, layers) if space is not None and layers else {}
        named = isinstance(config.features, tuple)
        layers, axes, adapters = _feature_plan(student, teacher, spec, layers, kept, run_on, config.seed, named)
    if config.feature_weight == 0:
        adapters = nn.ModuleDict()
    params = list(student.parameters()) + list(adapters.parameters())
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)
    cache_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    folder_held = contextlib.nullcontext()
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        folder_held = hold_folder(cache_dir)

    with folder_held, torch.random.fork_rng(devices=[run_on] if run_on.type == "cuda" else []):
        torch.manual_seed(config.seed)
        gen = torch.Generator().manual_seed(config.seed)
        losses: list[float] = []
        parts: dict[str, list[float]] = {}
        start, previous_seconds = 0, 0.0
        # a checkpoint belongs to these settings and these two models
        identity = {
            **config.to_dict(),
            "original_sha256": weights_hash(original),
            "pruned_sha256": weights_hash(pruned),
            "pool_sha256": _tensor_hash(pool) if pool is not None else None,
        }
        state = load_checkpoint(cache_dir, identity) if cache_dir is not None else None
        if state is not None:
            student.load_state_dict(state["student"])
            adapters.load_state_dict(state["adapters"])
            optimizer.load_state_dict(state["optimizer"])
            gen.set_state(state["generator"])
            set_rng_state(state["rng"], run_on)
            start, previous_seconds = int(state["step"]), float(state["seconds"])
            losses = [float(v) for v in state["losses"]]
            parts = {k: [float(v) for v in vs] for k, vs in json.loads(state["parts"]).items()}
            say(f"resuming from step {start}/{config.steps} ({cache_dir})")

        pool_seconds = 0.0
        if pool is None and config.inputs == "pool" and start < config.steps:
            say(f"synthesizing a pool of {config.pool_size} inputs from the original")
            pool, pool_seconds = synthetic_pool(
                teacher, spec, config, device=run_on, cache_dir=cache_dir, progress=None if quiet else say
            )

        _set_mode(student, config.bn)
        adapters.train()
        every = max(1, config.steps // 20)
        bar = progress_bar(config.steps, "recover", quiet=quiet, unit="step", initial=start)
        with bar:
            for step in range(start + 1, config.steps + 1):
                for group in optimizer.param_groups:
                    group["lr"] = _lr(config, step)
                pixels = _batch(step, pool, teacher, spec, config, gen, run_on)
                inputs = spec.normalize(pixels.to(run_on))
                total, terms = _losses(student, teacher, inputs, layers, kept, axes, adapters, config)
                optimizer.zero_grad(set_to_none=True)
                if not torch.isfinite(total):
                    raise RecoveryDivergedError(
                        f"recovery diverged at step {step} (loss {float(total.detach())}); lower the learning rate "
                        f"(lr, --lr: {config.lr:g}) or the feature weight (--feature-weight: {config.feature_weight:g})"
                    )
                total.backward()
                if config.grad_clip > 0:
                    nn.utils.clip_grad_norm_(params, config.grad_clip)
                optimizer.step()
                losses.append(float(total.detach()))
                for name, value in terms.items():
                    parts.setdefault(name, []).append(float(value.detach()))
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4g}")
                if cache_dir is not None and (step % config.checkpoint_every == 0 or step == config.steps):
                    elapsed = previous_seconds + time.perf_counter() - start_time
                    save_checkpoint(
                        cache_dir,
                        {
                            "step": step,
                            "seconds": elapsed,
                            "student": student.state_dict(),
                            "adapters": adapters.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "generator": gen.get_state(),
                            "rng": rng_state(run_on),
                            "losses": torch.tensor(losses, dtype=torch.float64),
                            "parts": json.dumps(parts),
                            "config": json.dumps(identity),
                        },
                    )
                if step % every == 0 or step == config.steps:
                    detail = ", ".join(f"{k} {v[-1]:.4g}" for k, v in parts.items())
                    say(f"step {step}/{config.steps}: loss {losses[-1]:.4g} ({detail})")

    model = merge_model(student) if config.expand > 1 else student  # draws from no RNG
    model = model.eval().to(home)
    return RecoverResult(
        model=model,
        losses=losses,
        parts=parts,
        seconds=previous_seconds + time.perf_counter() - start_time,
        config=config,
        pool_seconds=pool_seconds,
        feature_layers=layers,
        adapted_layers=[n for n in layers if adapter_key(n) in adapters],
        resumed_from=start,
        device=str(run_on),
        space=space,
        candidate={k: tuple(int(i) for i in v) for k, v in candidate.items()} if candidate is not None else None,
    )
