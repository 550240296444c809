import math
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from robustprune import InputSpec, SpecError, validate_model, zoo
from robustprune.models import ModelRefError, load_model
from robustprune.zoo.architectures import ARCHITECTURES


class Opaque:
    """An arbitrary pickled object: weights_only=True must refuse it."""


SPEC = InputSpec(shape=(1, 28, 28), mean=(0.5,), std=(0.25,), num_classes=10)


def test_spec_normalize_roundtrip_and_values():
    x = torch.rand(4, 1, 28, 28)
    z = SPEC.normalize(x)
    assert torch.allclose(z, (x - 0.5) / 0.25)
    assert torch.allclose(SPEC.denormalize(z), x, atol=1e-6)


def test_spec_per_channel_stats_broadcast():
    spec = InputSpec(shape=(3, 4, 4), mean=(0.1, 0.2, 0.3), std=(1.0, 2.0, 4.0), num_classes=5)
    z = spec.normalize(torch.ones(2, 3, 4, 4))
    assert torch.allclose(z[0, :, 0, 0], torch.tensor([0.9, 0.4, 0.175]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"shape": (1, 0, 28)}, "shape"),
        ({"mean": (0.1, 0.2)}, "mean"),
        ({"std": (0.0,)}, "std"),
        ({"std": (math.nan,)}, "finite"),
        ({"num_classes": 1}, "num_classes"),
        ({"value_range": (1.0, 0.0)}, "value_range"),
    ],
)
def test_spec_rejects_bad_values(kwargs, message):
    base = dict(shape=(1, 28, 28), mean=(0.5,), std=(0.25,), num_classes=10)
    base.update(kwargs)
    with pytest.raises(SpecError, match=message):
        InputSpec(**base)


def test_spec_json_roundtrip():
    assert InputSpec.from_dict(SPEC.to_dict()) == SPEC


def test_check_batch_shape():
    SPEC.check_batch(torch.zeros(2, 1, 28, 28))
    with pytest.raises(SpecError, match="expected a batch"):
        SPEC.check_batch(torch.zeros(2, 28, 28))


def test_validate_model_errors():
    validate_model(ARCHITECTURES["mlp"](), SPEC)
    with pytest.raises(SpecError, match=r"output must have shape \(N, 10\)"):
        validate_model(nn.Sequential(nn.Flatten(), nn.Linear(784, 7)), SPEC)
    with pytest.raises(SpecError, match="failed on an input of shape"):
        validate_model(nn.Sequential(nn.Flatten(), nn.Linear(100, 10)), SPEC)
    broken = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with torch.no_grad():
        broken[1].weight[0, 0] = float("nan")
    with pytest.raises(SpecError, match="NaN"):
        validate_model(broken, SPEC)
    with pytest.raises(SpecError, match=r"'1.weight' is torch.float64; .*model.float\(\)"):
        validate_model(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).double(), SPEC)

    with pytest.raises(SpecError, match="outputs probabilities.*log_softmax"):
        validate_model(nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Softmax(dim=1)), SPEC)
    validate_model(nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.LogSoftmax(dim=1)), SPEC)  # logits up to a shift
    validate_model(nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.ReLU()), SPEC)  # >= 0 but not rows summing to 1

    class HalfSoftmax(nn.Module):  # probabilities in half precision: compared in float32, still refused
        def forward(self, x):
            return torch.softmax(x.flatten(1)[:, :10], dim=1).half()

    with pytest.raises(SpecError, match="outputs probabilities"):
        validate_model(HalfSoftmax(), SPEC)

    class LogOfInput(nn.Module):  # finite weights, NaN logits on negative (normalized) inputs
        def forward(self, x):
            return torch.log(x.flatten(1)[:, :10])

    with pytest.raises(SpecError, match="outputs NaN or infinite logits on random in-range inputs$"):
        validate_model(LogOfInput(), SPEC)

    class Masked(nn.Module):  # -inf for a masked class: distillation and attacks would read NaN
        def forward(self, x):
            return x.flatten(1)[:, :10].masked_fill(torch.arange(10) == 3, float("-inf"))

    with pytest.raises(SpecError, match=r"large finite value \(-1e4\), not -inf"):
        validate_model(Masked(), SPEC)

    class Standardized(nn.Module):  # NaN only on a constant image (zero spread): fine on real inputs
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(784, 10)

        def forward(self, x):
            x = x.flatten(1)
            return self.fc((x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True))

    validate_model(Standardized(), SPEC)

    class NormalizedOnly(nn.Module):  # raises on inputs that are not normalized, as models may
        def forward(self, x):
            if x.max() > 10:
                raise ValueError("input is not normalized")
            return x.flatten(1)[:, :10]

    wide = InputSpec(shape=(1, 28, 28), mean=(127.5,), std=(63.75,), num_classes=10, value_range=(0.0, 255.0))
    validate_model(NormalizedOnly(), wide)  # the random probe is normalized like every input


def test_a_one_logit_binary_classifier_is_told_how_to_fit():
    with pytest.raises(SpecError, match=r"num_classes must be >= 2, got 1: .*torch.cat\(\[torch.zeros_like\(z\), z\]"):
        InputSpec(shape=(1, 28, 28), mean=(0.5,), std=(0.25,), num_classes=1)
    binary = InputSpec(shape=(1, 28, 28), mean=(0.5,), std=(0.25,), num_classes=2)
    with pytest.raises(SpecError, match=r"got \(2, 1\): a binary classifier with one logit"):
        validate_model(nn.Sequential(nn.Flatten(), nn.Linear(784, 1)), binary)


def test_evaluate_checks_the_model_against_the_spec():
    import robustprune as rp

    pairs = nn.Sequential(nn.Flatten(), nn.Linear(784, 5))  # 5 outputs for a 10-class spec
    with pytest.raises(SpecError, match=r"output must have shape \(N, 10\)"):
        rp.evaluate(pairs, SPEC, data=(torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)))


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_architectures_map_inputs_to_logits(name):
    model = ARCHITECTURES[name]().eval()
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("name", zoo.names())
def test_zoo_checkpoints_load_small_and_documented(name):
    model, spec = zoo.load(name)
    assert not model.training
    assert spec == zoo.FASHION_MNIST_SPEC
    assert zoo.checkpoint_path(name).stat().st_size < 5 * 1024 * 1024
    entry = zoo.manifest()[name]
    assert {"test_accuracy", "command", "provenance", "seed"} <= set(entry)
    # trained weights differ from a fresh initialisation
    fresh = zoo.build(name).state_dict()
    assert any(not torch.equal(t, fresh[k]) for k, t in model.state_dict().items() if t.is_floating_point())


def test_zoo_unknown_name():
    with pytest.raises(KeyError, match="unknown zoo model"):
        zoo.build("alexnet")


def test_load_model_references(tmp_path):
    model, spec = load_model("zoo:mlp")
    x = torch.rand(2, 1, 28, 28)

    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    other, _ = load_model("robustprune.zoo.architectures:mlp", weights=weights, spec=spec)
    assert torch.equal(other(x), model(x))

    scripted = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(model), scripted)
    with pytest.raises(ModelRefError, match="carries no input spec.*--input-shape"):
        load_model(str(scripted))  # no spec from any source: refused, never guessed
    Path(f"{scripted}.inputspec.json").write_text(spec.to_json())  # what `robustprune export` writes
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # torch's TorchScript deprecation: noise on a user's file
        ts, ts_spec = load_model(str(scripted))
    assert torch.allclose(ts(x), model(x))
    assert ts_spec == spec


def test_load_model_reference_errors(tmp_path):
    with pytest.raises(ModelRefError, match="unknown zoo model"):
        load_model("zoo:nope")
    with pytest.raises(ModelRefError, match="needs --weights"):
        load_model("robustprune.zoo.architectures:mlp", spec=zoo.FASHION_MNIST_SPEC)
    weights = tmp_path / "mlp.pt"
    torch.save(ARCHITECTURES["mlp"]().state_dict(), weights)
    with pytest.raises(ModelRefError, match="carries no input spec"):
        load_model("robustprune.zoo.architectures:mlp", weights=weights)
    with pytest.raises(ModelRefError, match="cannot import"):
        load_model("no_such_pkg.mod:factory", weights=tmp_path / "x.pt")
    with pytest.raises(ModelRefError, match="weights file not found"):
        load_model("robustprune.zoo.architectures:mlp", weights=tmp_path / "missing.pt")
    wrong = tmp_path / "cnn.pt"
    torch.save(ARCHITECTURES["cnn"]().state_dict(), wrong)
    with pytest.raises(ModelRefError, match="do not fit the model"):
        load_model("robustprune.zoo.architectures:mlp", weights=wrong)
    pickled = tmp_path / "pickle.pt"
    torch.save({"state_dict": ARCHITECTURES["mlp"]().state_dict(), "extra": Opaque()}, pickled)
    with pytest.raises(ModelRefError, match="weights_only=True"):
        load_model("robustprune.zoo.architectures:mlp", weights=pickled)
    with pytest.raises(ModelRefError, match="neither zoo:NAME"):
        load_model("not-a-file")
