"""Resolve a model reference (what a user types after --model) to a model and its InputSpec.

Accepted references:
  zoo:NAME                 a trained reference model shipped with robustprune
  torchvision:NAME         a torchvision classification architecture (built with weights=None); weights from
                           ``weights`` (never downloaded)
  path/to/model.ts         a TorchScript file (torch.jit.save); evaluated, not pruned
  path/to/program.pt2      a torch.export program (torch.export.save), rebuilt as modules torch-pruning can trace
  path/to/run_folder       a pruned run folder (spec.json + pruned.pt)
  package.module:factory   a callable returning an nn.Module or (nn.Module, InputSpec); weights from ``weights``
                           (a state dict, loaded with ``weights_only=True``)

The input spec comes from, in order: the caller (``spec``; CLI --spec or --input-shape ...), the model itself
(a factory's returned spec, a ``model.input_spec`` attribute, ``FILE.inputspec.json`` next to a model file, a run
folder's spec.json, the zoo's, torchvision's published transforms). A model with none is refused: robustprune will
not guess how a model normalizes its inputs.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from robustprune import zoo
from robustprune.spec import InputSpec, SpecError, load_spec_file, validate_model


class ModelRefError(ValueError):
    """A model reference that cannot be resolved; the message says why."""


def _load_state_dict(model: nn.Module, weights: str | Path, allow_pickle: bool) -> None:
    path = Path(weights)
    if not path.is_file():
        raise ModelRefError(f"weights file not found: {path}")
    if _is_model_archive(path):
        raise ModelRefError(f"{path} is a whole model (TorchScript or torch.export), not weights: pass it as the model")
    try:
        state = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as exc:
        raise ModelRefError(
            f"could not load weights from {path} with weights_only=True ({exc.__class__.__name__}); "
            "save a plain state dict with torch.save(model.state_dict(), path)"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelRefError(f"{path} does not hold a state dict (found {type(state).__name__})")
    load_checked(model, state, path)


def _shape(tensor: object) -> str:
    return str(tuple(tensor.shape)) if isinstance(tensor, torch.Tensor) else type(tensor).__name__


def load_checked(model: nn.Module, state: dict, source: str | Path) -> None:
    """``model.load_state_dict(state)``; a ModelRefError naming the first tensor that does not fit, and both shapes."""
    own = model.state_dict()
    problems = [
        f"{name} has shape {_shape(state[name])} in {source}, {_shape(tensor)} in the model"
        for name, tensor in own.items()
        if name in state and (not isinstance(state[name], torch.Tensor) or state[name].shape != tensor.shape)
    ]
    problems += [f"{name} is missing from {source}" for name in own if name not in state]
    problems += [f"{source} has {name}, which the model does not" for name in state if name not in own]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ModelRefError(f"weights do not fit the model: {problems[0]}{more}")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # what the checks above do not cover: one line of torch's reason
        raise ModelRefError(f"weights in {source} do not fit the model: {one_line(exc)}") from exc


def one_line(exc: BaseException) -> str:
    """The line of ``exc``'s message that says what went wrong (TorchScript puts it last, after its traceback)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return exc.__class__.__name__
    if len(lines) > 1 and lines[0].startswith("The following operation failed in the TorchScript interpreter"):
        return lines[-1]
    return lines[0]


def resolve_factory(ref: str) -> Callable[[], nn.Module]:
    """The callable ``package.module:factory`` names (importing the module runs its code)."""
    module_name, _, attr = ref.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ModelRefError(f"cannot import {attr!r} from module {module_name!r}: {one_line(exc)}") from exc
    if not callable(factory):
        raise ModelRefError(f"{ref} is not callable ({type(factory).__name__}); name a function returning a model")
    return factory


def build_from(factory: Callable[[], nn.Module], name: str) -> nn.Module:
    """The nn.Module ``factory()`` returns (any InputSpec it returns alongside is dropped)."""
    return build_with_spec(factory, name)[0]


def build_with_spec(factory: Callable[[], object], name: str) -> tuple[nn.Module, InputSpec | None]:
    """Call ``factory()`` (named ``name`` in messages): ``(model, spec)`` where the spec is the one the factory
    returned, or the model's ``input_spec`` attribute, or None. A ModelRefError if it needs arguments, raises, or
    returns something other than an nn.Module or (nn.Module, InputSpec)."""
    try:
        inspect.signature(factory).bind()
    except TypeError:
        needed = [
            p.name
            for p in inspect.signature(factory).parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        raise ModelRefError(
            f"{name} needs arguments ({', '.join(needed)}); name a factory that takes none (wrap it in a function)"
        ) from None
    except ValueError:  # no signature (some builtins): calling it is the only check
        pass
    try:
        built = factory()
    except Exception as exc:
        raise ModelRefError(f"{name} raised {exc.__class__.__name__}: {one_line(exc)}") from exc
    model, spec = built if isinstance(built, tuple) and len(built) == 2 else (built, None)
    if not isinstance(model, nn.Module) or not (spec is None or isinstance(spec, InputSpec)):
        raise ModelRefError(
            f"{name} returned {type(built).__name__}, not a torch.nn.Module or (torch.nn.Module, InputSpec)"
        )
    return model, spec or carried_spec(model)


def carried_spec(model: nn.Module) -> InputSpec | None:
    """The InputSpec a model carries as ``model.input_spec`` (an InputSpec or its dict), else None."""
    spec = getattr(model, "input_spec", None)
    if spec is None or isinstance(spec, InputSpec):
        return spec
    if isinstance(spec, dict):
        return InputSpec.from_dict(spec)
    raise SpecError(f"model.input_spec must be an InputSpec or its dict, got {type(spec).__name__}")


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device; a ValueError that says why when it cannot be used here."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"not a device: {device!r} (use cpu or cuda)") from exc
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {str(device)!r} is not supported: robustprune runs on cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but CUDA is not available on this machine; use cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r} asked for, but this machine has {torch.cuda.device_count()} GPU(s)")
    return device


#: What a user gives when a model carries no input spec (named in the refusal).
SPEC_HINT = (
    "give its input spec: --spec spec.json, or --input-shape C,H,W (C,T,H,W for video) --num-classes N "
    "(plus --mean/--std if it normalizes its inputs, --value-range if pixels are not in [0, 1]); "
    "in Python, spec=rp.InputSpec(...)"
)


def load_model(
    ref: str,
    weights: str | Path | None = None,
    spec: InputSpec | None = None,
    allow_pickle: bool = False,
    device: str | torch.device = "cpu",
    trust_code: bool = False,
) -> tuple[nn.Module, InputSpec]:
    """Resolve ``ref`` to ``(model in eval mode, InputSpec)`` and validate it.

    ``spec`` (the caller's) wins over the model's own; a model with neither is refused with a ModelRefError
    saying which flags describe it. ``trust_code`` lets a run folder naming ``package.module:factory`` import it.
    """
    check_device(device)
    own: InputSpec | None = None
    if ref.startswith("zoo:"):
        name = ref[4:]
        if name not in zoo.names():
            raise ModelRefError(f"unknown zoo model {name!r}; choose one of: {', '.join(zoo.names())}")
        model, own = zoo.load(name)
        if weights is not None:
            _load_state_dict(model, weights, allow_pickle)
    elif ref.startswith(TORCHVISION):
        model, own = torchvision_model(ref, weights, spec, allow_pickle)
    elif Path(ref).is_dir():
        model, own = _load_run_folder(ref, weights, spec, allow_pickle, trust_code)
    elif Path(ref).is_file():
        if weights is not None:
            raise ModelRefError(f"{ref} is a model file that holds its own weights; drop --weights")
        program = Path(ref).suffix == ".pt2" or is_program_archive(ref)
        model = _load_program(ref, allow_pickle) if program else _load_torchscript(ref)
        own = sidecar_spec(ref)
    elif ":" in ref:
        model, own = build_with_spec(resolve_factory(ref), ref)
        if weights is None:
            raise ModelRefError(f"{ref} needs --weights FILE (a state dict); refusing to use random weights")
        _load_state_dict(model, weights, allow_pickle)
    else:
        raise ModelRefError(
            f"model reference {ref!r} is neither zoo:NAME, torchvision:NAME, an existing model file or run folder, "
            "nor package.module:factory"
        )
    spec = spec or own
    if spec is None:
        raise ModelRefError(f"{ref} carries no input spec; {SPEC_HINT}")
    model = model.to(device).eval()
    try:
        validate_model(model, spec)
    except SpecError as exc:  # TorchScript errors carry their own multi-line traceback: keep the line that says why
        message, cause = str(exc), exc.__cause__
        if "\n" not in message:
            raise
        prefix = message.partition(str(cause))[0] if cause is not None and str(cause) in message else ""
        raise SpecError(prefix + one_line(cause if prefix else exc)) from exc
    return model, spec


def sidecar_spec(path: str | Path) -> InputSpec | None:
    """The spec ``robustprune export`` writes next to a model file (``FILE.inputspec.json``), if there is one."""
    sidecar = Path(f"{path}.inputspec.json")
    return load_spec_file(sidecar) if sidecar.is_file() else None


def canonical_ref(ref: str) -> str:
    """``ref`` as a run folder records it: model files by absolute path (a rerun from elsewhere finds them)."""
    return str(Path(ref).resolve()) if Path(ref).is_file() else ref


def _load_torchscript(ref: str) -> nn.Module:
    try:
        with warnings.catch_warnings():  # torch deprecates TorchScript; a user's file is still read as given
            warnings.filterwarnings("ignore", message=".*torch.jit.load.* is deprecated", category=FutureWarning)
            return torch.jit.load(ref, map_location="cpu")
    except Exception as exc:
        raise ModelRefError(
            f"{ref} is not a TorchScript file ({exc.__class__.__name__}); give a TorchScript file, a torch.export "
            "program (.pt2), zoo:NAME, torchvision:NAME, or package.module:factory"
        ) from exc


def _zip_entry_names(path: str | Path) -> set[str]:
    """The file names (last path part) inside the zip ``path``; none when it is not a zip."""
    try:
        with zipfile.ZipFile(path) as archive:
            return {name.rpartition("/")[2] for name in archive.namelist()}
    except (OSError, zipfile.BadZipFile):
        return set()


def is_program_archive(path: str | Path) -> bool:
    """Whether ``path`` is a torch.export archive whatever its name (a zip with an ``archive_format`` entry;
    TorchScript files are zips too, without one)."""
    return "archive_format" in _zip_entry_names(path)


def _is_model_archive(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript file (``constants.pkl``) or a torch.export archive; a state dict is
    neither."""
    return bool({"archive_format", "constants.pkl"} & _zip_entry_names(path))


#: Entries of a torch.export archive (after its root folder) that hold data only: the graph as JSON, tensors
#: by their metadata, sample inputs, version marks. Anything else (compiled AOTInductor libraries, ...) may run code.
_PROGRAM_DATA = ("archive_format", "archive_version", "byteorder", ".data/", "models/", "data/weights/",
                 "data/constants/", "data/sample_inputs/", "extra/")  # fmt: skip


def check_program_archive(path: str | Path, allow_pickle: bool = False) -> None:
    """Refuse a torch.export archive that would unpickle (run code) when loaded, unless ``allow_pickle``:
    torch's reader loads a weight or constant marked ``use_pickle``, a custom or opaque object, and sample
    inputs that are not plain tensors with full pickle. A program that ``torch.export.save`` wrote from
    tensors passes."""
    if allow_pickle:
        return
    import io
    import json

    problems = []
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                inner = name.partition("/")[2]
                if not inner.startswith(_PROGRAM_DATA):
                    problems.append(inner)
                elif inner.startswith(("data/weights/", "data/constants/")) and inner.endswith("_config.json"):
                    config = json.loads(archive.read(name)).get("config", {})
                    tensors = ("weight_", "tensor_")  # custom_obj_/opaque_obj_ entries are pickles
                    problems += [
                        f"{fqn} (pickled)"
                        for fqn, meta in config.items()
                        if meta.get("use_pickle") or not str(meta.get("path_name", "")).startswith(tensors)
                    ]
                elif inner.startswith("data/sample_inputs/"):
                    try:
                        torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                    except Exception:
                        problems.append(inner)
    except (OSError, zipfile.BadZipFile, ValueError, AttributeError) as exc:
        raise ModelRefError(f"{path} is not a torch.export program ({exc.__class__.__name__})") from exc
    if problems:
        raise ModelRefError(
            f"{path} holds entries that load with full pickle ({', '.join(problems[:3])}), which can run code; "
            "pass allow_pickle=True (--allow-pickle) only if you trust it"
        )


def _load_program(ref: str, allow_pickle: bool = False) -> nn.Module:
    from robustprune.exported import program_to_module

    check_program_archive(ref, allow_pickle)
    try:
        with open(ref, "rb") as file:  # a file object: torch warns about a path not ending in .pt2
            program = torch.export.load(file)
    except Exception as exc:
        raise ModelRefError(f"{ref} is not a torch.export program ({exc.__class__.__name__}: {one_line(exc)})") from exc
    return program_to_module(program, ref)


def _load_run_folder(
    ref: str, weights: str | Path | None, spec: InputSpec | None, allow_pickle: bool, trust_code: bool
) -> tuple[nn.Module, InputSpec]:
    from robustprune.structure.persist import load_pruned

    if weights is not None:
        raise ModelRefError(f"{ref} is a run folder holding its own weights (pruned.pt); drop --weights")
    if not (Path(ref) / "spec.json").is_file():
        raise ModelRefError(f"{ref} is a folder but not a run folder (no spec.json)")
    model, own, _data = load_pruned(ref, allow_pickle=allow_pickle, trust_code=trust_code)
    if spec is not None and spec != own:
        raise ModelRefError(f"{ref} records its own input spec ({own.to_json()}); drop --spec/--input-shape")
    return model, own


TORCHVISION = "torchvision:"


def _torchvision_models():
    """``torchvision.models`` (an optional dependency); ModelRefError naming the extra if it is not installed."""
    try:
        import torchvision.models as tvm
    except ImportError as exc:
        raise ModelRefError("torchvision:NAME needs torchvision: pip install 'robustprune[torchvision]'") from exc
    return tvm


def torchvision_names() -> list[str]:
    """torchvision's image and video classification architectures, the names ``torchvision:NAME`` accepts."""
    tvm = _torchvision_models()
    return tvm.list_models(module=tvm) + _video_names(tvm)


def _video_names(tvm) -> list[str]:
    return tvm.list_models(module=tvm.video)


def torchvision_spec(name: str, num_classes: int | None = None) -> InputSpec | None:
    """The input spec of torchvision's published weights for ``name`` (crop size, mean, std; read from the package,
    nothing downloaded), or None when torchvision publishes none."""
    tvm = _torchvision_models()
    if name in _video_names(tvm):  # the clip length (frames) is the training recipe's, not in the weights' meta
        return None
    try:
        weights = tvm.get_model_weights(name).DEFAULT
        transforms = weights.transforms()
        size = transforms.crop_size
        shape = (len(transforms.mean), *(size * 2 if len(size) == 1 else size))
        classes = num_classes or len(weights.meta["categories"])
        return InputSpec(shape, transforms.mean, transforms.std, classes)
    except Exception:  # no published weights or transforms of another kind: the user gives the spec
        return None


def build_torchvision(name: str, num_classes: int | None) -> nn.Module:
    """``torchvision.models.get_model(name, weights=None, num_classes=...)``: the architecture, never weights."""
    tvm = _torchvision_models()
    config = {"weights": None} if num_classes is None else {"weights": None, "num_classes": num_classes}
    try:
        return tvm.get_model(name, **config)
    except Exception as exc:
        raise ModelRefError(f"torchvision could not build {name!r}: {one_line(exc)}") from exc


def torchvision_model(
    ref: str, weights: str | Path | None, spec: InputSpec | None, allow_pickle: bool = False
) -> tuple[nn.Module, InputSpec | None]:
    """``torchvision:NAME`` with the user's weights file: (model, the spec torchvision publishes for it or None)."""
    name = ref[len(TORCHVISION) :]
    if name not in torchvision_names():
        raise ModelRefError(f"torchvision has no classification model {name!r}; e.g. resnet18, mobilenet_v3_small")
    own = None if spec is not None else torchvision_spec(name)
    if spec is None and own is None:  # said before the weights are read
        raise ModelRefError(f"{ref} carries no input spec; {SPEC_HINT}")
    if weights is None:
        raise ModelRefError(
            f"{ref} needs --weights FILE (a state dict; robustprune never downloads weights nor uses random ones)"
        )
    model = build_torchvision(name, (spec or own).num_classes if (spec or own) else None)
    _load_state_dict(model, weights, allow_pickle)
    return model, own


def rebuild_original(ref: object, spec: InputSpec, allow_pickle: bool = False) -> Callable[[], nn.Module] | None:
    """What rebuilds a run folder's original architecture from its recorded reference, or None if nothing can.

    torchvision:NAME and torch.export programs (.pt2) are data, rebuilt without importing user code; for
    ``package.module:factory`` (which needs the caller's trust) and anything else this returns None.
    """
    if not isinstance(ref, str):
        return None
    if ref.startswith(TORCHVISION):
        name = ref[len(TORCHVISION) :]
        if name not in torchvision_names():
            raise ModelRefError(f"the run folder names torchvision model {name!r}, which this torchvision lacks")
        return lambda: build_torchvision(name, spec.num_classes)
    if Path(ref).suffix == ".pt2":
        if not Path(ref).is_file():
            raise ModelRefError(f"the run folder's original program {ref} is gone; pass build=<factory>")
        return lambda: _load_program(ref, allow_pickle)
    return None


def is_library_ref(ref: str) -> bool:
    """Whether loading ``ref`` runs no code of the user's: zoo:, torchvision: or a torch.export program file."""
    return ref.startswith(("zoo:", TORCHVISION)) or Path(ref).suffix == ".pt2"
