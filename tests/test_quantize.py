"""int8 post-training quantization (PT2E via torchao) on a residual model with a shared ReLU."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from robustprune.quantize import QuantizeError, load_quantized, quantize_int8, save_quantized
from robustprune.spec import InputSpec

pytest.importorskip("torchao")

SPEC = InputSpec(shape=(1, 12, 12), mean=(0.3,), std=(0.3,), num_classes=4)


class Block(nn.Module):
    """A residual block whose one ReLU module is called twice (the pattern that breaks non-strict export)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), Block(8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)
    )
    with torch.no_grad():  # non-trivial BN statistics
        model.train()(torch.rand(64, *SPEC.shape))
    return model.eval()


def test_int8_program_tracks_the_float_model_and_holds_quantize_ops():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    program = quantize_int8(model, SPEC, torch.rand(64, *SPEC.shape))
    ops = {str(n.target) for n in program.graph.nodes}
    assert any("quantize_per_tensor" in op for op in ops)
    x = torch.rand(16, *SPEC.shape)
    with torch.no_grad():
        want = model(SPEC.normalize(x))
        got = program.module()(SPEC.normalize(x))
    assert (got - want).norm() / want.norm() < 0.1
    assert not torch.equal(got, want)  # it really is quantized
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_save_and_reload_is_exact_for_any_batch(tmp_path):
    program = quantize_int8(_model(), SPEC, torch.rand(32, *SPEC.shape))
    path = save_quantized(program, tmp_path / "int8.pt2")
    reloaded = load_quantized(path)
    for n in (1, 7):
        x = SPEC.normalize(torch.rand(n, *SPEC.shape))
        with torch.no_grad():
            assert torch.equal(reloaded(x), program.module()(x))


def test_calibration_shape_and_backend_are_checked():
    with pytest.raises(QuantizeError, match="calibration must be"):
        quantize_int8(_model(), SPEC, torch.rand(8, 3, 12, 12))
    with pytest.raises(QuantizeError, match="backend"):
        quantize_int8(_model(), SPEC, torch.rand(8, *SPEC.shape), backend="tensorrt")


# -- int8 run folders (robustprune quantize) -------------------------------------------------------------


def _baseline_run(tmp_path):
    from robustprune.cli import main

    source = tmp_path / "cnn"
    args = ["baseline", "--model", "zoo:cnn", "--method", "l1_uniform", "--target-macs", "0.6", "--no-eval"]
    assert main([*args, "--out", str(source), "--quiet"]) == 0
    return source


def test_quantize_writes_a_run_folder_that_loads_as_int8_with_float_gradients(tmp_path):
    from robustprune.cli import main
    from robustprune.evaluate.cost import count_macs_params
    from robustprune.quantize.run import Int8Model, load_quantized_run
    from robustprune.structure import load_pruned

    source = _baseline_run(tmp_path)
    out = tmp_path / "int8"
    args = ["quantize", str(source), "--out", str(out), "--calibration", "gaussian", "--n", "32", "--no-eval"]
    assert main([*args, "--quiet"]) == 0
    assert {"int8.pt2", "pruned.pt", "spec.json", "quantize.json", "report.json"} <= {p.name for p in out.iterdir()}
    model, spec, info = load_quantized_run(out)
    assert isinstance(model, Int8Model) and info["calibration"] == "gaussian" and info["n"] == 32
    float_model, _, _ = load_pruned(source)
    x = spec.normalize(torch.rand(8, *spec.shape))
    with torch.no_grad():
        got, want = model.eval()(x), float_model(x)
    assert not torch.equal(got, want) and (got - want).norm() / want.norm() < 0.2
    x.requires_grad_()
    model(x).sum().backward()  # gradients come from the float model (BPDA): attacks can run
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert count_macs_params(model, spec) == count_macs_params(float_model, spec)
    assert main([*args, "--quiet"]) == 0  # a rerun into its own int8 folder, as for every kind of run
    base = ["baseline", "--model", "zoo:mlp", "--method", "l1_uniform", "--target-params", "0.5", "--no-eval"]
    assert main([*base, "--out", str(out), "--quiet"]) == 2  # another kind of run: refused, int8.pt2 kept
    assert (out / "int8.pt2").is_file() and (out / "quantize.json").is_file()
    assert main(["export", str(out), "--format", "torchscript", "--out", str(tmp_path / "m.ts")]) == 2  # not float
    load = f"from robustprune.quantize.run import load_quantized_run; load_quantized_run({str(out)!r})"
    fresh = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True)  # torchao not yet imported
    assert fresh.returncode == 0, fresh.stderr[-2000:]


def test_calibration_sources(monkeypatch):
    from robustprune.probes import cache
    from robustprune.quantize.run import calibration_inputs
    from robustprune.search.engine import SEARCH_PROBES

    with pytest.raises(QuantizeError, match="'real' is Fashion-MNIST train images, which do not fit"):
        calibration_inputs("real", None, SPEC, n=50)  # a (1, 12, 12) 4-class model
    gauss = calibration_inputs("gaussian", None, SPEC, n=50, seed=1)
    assert gauss.shape == (50, *SPEC.shape) and 0 <= gauss.min() and gauss.max() <= 1
    assert torch.equal(gauss, calibration_inputs("gaussian", None, SPEC, n=50, seed=1))
    seen = {}

    class Stub:
        pixels = torch.rand(300, *SPEC.shape)

    def fake(model, spec, config, **kwargs):
        seen["config"] = config
        return Stub

    monkeypatch.setattr(cache, "cached_generate", fake)
    assert calibration_inputs("synthetic", _model(), SPEC, n=100, seed=3).shape[0] == 100
    assert seen["config"] == SEARCH_PROBES.seeded(3).synthetic  # the search's own probes: a cache hit after it
    with pytest.raises(ValueError, match="calibration"):
        calibration_inputs("imagenet", None, SPEC)
    # one-line refusals the CLI reports with exit 2: too few inputs, real images from the validation split
    with pytest.raises(QuantizeError, match="at least 2"):
        calibration_inputs("gaussian", None, SPEC, n=1)
    fm = InputSpec((1, 28, 28), (0.29,), (0.35,), 10)
    with pytest.raises(QuantizeError, match="validation split"):
        calibration_inputs("real", None, fm, n=55_001)
    # gaussian pixels ~ N(mean, std) within the spec's own pixel range (0-255 here), not [0, 1]
    bytes_spec = InputSpec((3, 8, 8), (120.0,) * 3, (60.0,) * 3, 10, (0.0, 255.0))
    wide = calibration_inputs("gaussian", None, bytes_spec, n=64, seed=0)
    assert wide.max() > 200 and abs(float(((wide - 120.0) / 60.0).mean())) < 0.1


def test_xnnpack_without_executorch_says_where_the_quantizer_is():
    pytest.importorskip("torchao")
    try:
        import executorch  # noqa: F401
    except ImportError:
        with pytest.raises(QuantizeError, match=r"ExecuTorch: pip install .robustprune\[xnnpack\]"):
            quantize_int8(_model(), SPEC, torch.rand(8, *SPEC.shape), backend="xnnpack")
    else:
        pytest.skip("executorch is installed: the xnnpack quantizer is available")


class ViewResidual(nn.Module):
    """A residual whose skip input is a view (a channel LayerNorm's permute back, as in ConvNeXt)."""

    def __init__(self, c: int, view: bool) -> None:
        super().__init__()
        self.stem, self.conv, self.view = nn.Conv2d(1, c, 3, padding=1), nn.Conv2d(c, c, 1), view

    def forward(self, x):
        x = self.stem(x)
        if self.view:
            x = x.permute(0, 2, 3, 1).permute(0, 3, 1, 2)
        return x + self.conv(x)


@pytest.mark.parametrize("view", [False, True])
def test_conv_add_is_fused_unless_the_skip_input_is_a_view(view):
    from robustprune.quantize.ptq import _export, _quantizer

    model = ViewResidual(4, view).eval()
    graph = _export(model, torch.rand(2, *SPEC.shape), strict=True).module()
    _quantizer("x86").annotate(graph)
    add = next(n for n in graph.graph.nodes if getattr(n.target, "_opname", None) == "add")
    annotated = add.meta.get("quantization_annotation")
    # inductor fuses conv + add in place into the skip tensor and fails when that tensor is a view
    assert (annotated is not None and bool(annotated.input_qspec_map)) is not view


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_an_int8_model_moved_to_cuda_runs_its_program_on_the_cpu_and_answers_on_cuda(tmp_path):
    from robustprune.cli import main
    from robustprune.quantize.run import load_quantized_run

    source, out = _baseline_run(tmp_path), tmp_path / "int8"
    assert main(["quantize", str(source), "--out", str(out), "--calibration", "gaussian", "--n", "32", "--quiet"]) == 0
    model, spec, _ = load_quantized_run(out)
    x = spec.normalize(torch.rand(4, *spec.shape))
    with torch.no_grad():
        want = model(x)
    model = model.to("cuda")
    xc = x.to("cuda").requires_grad_()
    got = model(xc)
    assert got.device.type == "cuda" and torch.allclose(got.detach().cpu(), want, atol=1e-5)  # (out + ref) - ref
    got.sum().backward()  # the float model's gradients, on the GPU
    assert xc.grad is not None and xc.grad.abs().sum() > 0
