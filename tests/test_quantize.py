"""int8 post-training quantization (PT2E via torchao) on a residual model with a shared ReLU."""

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
