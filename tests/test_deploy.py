"""Deployment formats: each file reloads to the model's outputs for any batch size."""

import pytest
import torch
from torch import nn

from robustprune.deploy import DeployError, check_onnx, save_model
from robustprune.spec import InputSpec

SPEC = InputSpec(shape=(1, 10, 10), mean=(0.5,), std=(0.5,), num_classes=3)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    ).eval()


def _reload(path, fmt):
    if fmt == "torchscript":
        return torch.jit.load(str(path))
    if fmt == "torch-export":
        return torch.export.load(str(path)).module()
    model = _model()
    model.load_state_dict(torch.load(path, weights_only=True))
    return model


@pytest.mark.parametrize("fmt", ["torchscript", "torch-export", "state_dict"])
def test_torch_formats_reload_exactly_for_any_batch(tmp_path, fmt):
    model = _model()
    path = save_model(model, SPEC, tmp_path / "m.pt", fmt)
    loaded = _reload(path, fmt)
    for n in (1, 7):
        x = torch.randn(n, *SPEC.shape)
        with torch.no_grad():
            assert torch.allclose(loaded(x), model(x), atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left
    (tmp_path / "again").mkdir()
    again = save_model(model, SPEC, tmp_path / "again" / "m.pt", fmt)
    if fmt != "torchscript":  # TorchScript names each trace in a process anew (___torch_mangle_N)
        assert again.read_bytes() == path.read_bytes()  # the same model, the same bytes (no temporary name inside)


def test_onnx_is_written_and_checked_against_the_model(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = _model()
    path = save_model(model, SPEC, tmp_path / "m.onnx", "onnx")
    model.train()
    assert check_onnx(path, model, SPEC, batch_size=9) <= 1e-4
    assert model.training  # checked in eval mode, handed back in its own
    other = _model()
    with torch.no_grad():
        other[-1].bias += 1.0
    with pytest.raises(DeployError, match="differs"):
        check_onnx(path, other, SPEC)


def test_onnx_tolerance_is_relative_to_the_largest_output(tmp_path):
    # logits near 1e3: float32 rounding alone differs by ~1e-4 absolute between ONNX Runtime and torch
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 64, 3),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 64, 256),
        nn.ReLU(),
        nn.Linear(256, 3),
    ).eval()
    with torch.no_grad():
        model[-1].weight *= 1e4
    path = save_model(model, SPEC, tmp_path / "m.onnx", "onnx")  # checks the file itself
    assert check_onnx(path, model, SPEC) <= 1e-6
    with torch.no_grad():
        model[-1].bias += 1.0  # 1 in ~1e3: still far above float32 rounding
    with pytest.raises(DeployError, match="of the largest output"):
        check_onnx(path, model, SPEC)


def test_an_untraceable_model_fails_in_one_line_and_leaves_no_file(tmp_path):
    class Branchy(nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :3] if x.sum().item() > 0 else x.flatten(1)[:, 3:6]

    with pytest.raises(DeployError, match="could not write torch-export"):
        save_model(Branchy(), SPEC, tmp_path / "m.pt2", "torch-export")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DeployError, match="unknown format"):
        save_model(_model(), SPEC, tmp_path / "m", "tflite")


def test_a_torch_export_file_is_recognised_by_content_not_name(tmp_path):
    from robustprune.models import is_program_archive, load_model

    model = _model()
    program = save_model(model, SPEC, tmp_path / "model.ep", "torch-export")
    script = save_model(model, SPEC, tmp_path / "model.pt", "torchscript")
    assert is_program_archive(program) and not is_program_archive(script)
    assert not is_program_archive(tmp_path / "missing") and not is_program_archive(__file__)
    loaded, _ = load_model(str(program), spec=SPEC)
    x = torch.randn(3, *SPEC.shape)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-6)
    assert not isinstance(loaded, torch.jit.ScriptModule)
