"""Gradient passes are cut into chunks sized from one image's activations, and the chunks change no result."""

import pytest
import torch
from torch import nn

from robustprune import _batching
from robustprune._batching import activation_bytes, grad_batch_size
from robustprune.criteria.taylor import taylor_for_groups
from robustprune.evaluate.attacks import adversarial_examples
from robustprune.probes.probeset import penultimate_features
from robustprune.structure.space import PruneSpace
from robustprune.zoo import FASHION_MNIST_SPEC
from robustprune.zoo.architectures import ARCHITECTURES

torch.set_num_threads(1)


class BatchSpy:
    """Records the batch size of every forward pass of ``model``."""

    def __init__(self, model: nn.Module):
        self.sizes: list[int] = []
        self.handle = model.register_forward_pre_hook(lambda _m, args: self.sizes.append(args[0].shape[0]))


def test_activation_bytes_sums_every_leaf_output():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    # conv and relu: 4 x 8 x 8 floats each; flatten: the same 256; linear: 10 (4 bytes per float)
    assert activation_bytes(model, (1, 8, 8)) == 4 * (256 + 256 + 256 + 10)


def test_one_image_is_measured_once_per_model_structure():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
    spy = BatchSpy(model)
    first = activation_bytes(model, (1, 8, 8))
    assert activation_bytes(model, (1, 8, 8)) == first and len(spy.sizes) == 1  # remembered: no second pass
    model[0] = nn.Conv2d(1, 2, 3, padding=1)  # pruned in place: the parameter shapes change
    assert activation_bytes(model, (1, 8, 8)) == first // 2 and len(spy.sizes) == 2


def test_the_chunk_shrinks_with_the_memory_budget(monkeypatch):
    model = ARCHITECTURES["cnn"]().eval()
    per_input = 2 * activation_bytes(model, FASHION_MNIST_SPEC.shape)
    assert grad_batch_size(model, FASHION_MNIST_SPEC.shape, 250) == 250  # a 28x28 model keeps the full chunk
    monkeypatch.setattr(_batching, "GRAD_MEMORY_BYTES", 3 * per_input)
    assert grad_batch_size(model, FASHION_MNIST_SPEC.shape, 250) == 3
    monkeypatch.setattr(_batching, "GRAD_MEMORY_BYTES", 1)
    assert grad_batch_size(model, FASHION_MNIST_SPEC.shape, 250) == 1


def test_attacks_run_in_memory_sized_chunks_with_the_same_result(monkeypatch):
    torch.manual_seed(0)
    model = ARCHITECTURES["cnn"]().eval()
    pixels = torch.rand(10, *FASHION_MNIST_SPEC.shape)
    labels = torch.arange(10)
    whole = adversarial_examples(model, FASHION_MNIST_SPEC, pixels, labels, attack="fgsm", eps=0.05)
    per_input = 2 * activation_bytes(model, FASHION_MNIST_SPEC.shape)
    monkeypatch.setattr(_batching, "GRAD_MEMORY_BYTES", 3 * per_input)
    spy = BatchSpy(model)
    chunked = adversarial_examples(model, FASHION_MNIST_SPEC, pixels, labels, attack="fgsm", eps=0.05)
    spy.handle.remove()
    assert max(spy.sizes) == 3
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0)


def test_taylor_runs_in_memory_sized_chunks_with_the_same_scores(monkeypatch):
    torch.manual_seed(0)
    space = PruneSpace(ARCHITECTURES["resnet20"]().eval(), FASHION_MNIST_SPEC)
    inputs = torch.randn(7, *FASHION_MNIST_SPEC.shape)
    indices = list(range(len(space.groups)))
    whole = taylor_for_groups(space, inputs, indices)
    per_input = 2 * activation_bytes(space.model, FASHION_MNIST_SPEC.shape)
    monkeypatch.setattr(_batching, "GRAD_MEMORY_BYTES", 2 * per_input)
    spy = BatchSpy(space.model)
    chunked = taylor_for_groups(space, inputs, indices)
    spy.handle.remove()
    assert max(spy.sizes) == 2
    for name, scores in whole.items():
        torch.testing.assert_close(chunked[name], scores, atol=1e-6, rtol=1e-5)


def test_probe_features_run_in_memory_sized_chunks_with_the_same_result(monkeypatch):
    torch.manual_seed(0)
    space = PruneSpace(ARCHITECTURES["resnet20"]().eval(), FASHION_MNIST_SPEC)
    inputs = torch.randn(7, *FASHION_MNIST_SPEC.shape)
    with torch.no_grad():
        whole = penultimate_features(space.model, space.output_layer, inputs)
        monkeypatch.setattr(_batching, "GRAD_MEMORY_BYTES", 3 * activation_bytes(space.model, FASHION_MNIST_SPEC.shape))
        spy = BatchSpy(space.model)
        chunked = penultimate_features(space.model, space.output_layer, inputs)
        spy.handle.remove()
    assert max(spy.sizes) == 3
    for got, expected in zip(chunked, whole, strict=True):
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_a_model_that_cannot_be_measured_keeps_the_full_chunk():
    model = ARCHITECTURES["cnn"]().eval()
    scripted = torch.jit.trace(model, torch.zeros(1, *FASHION_MNIST_SPEC.shape))  # takes no hooks
    assert activation_bytes(scripted, FASHION_MNIST_SPEC.shape) is None
    assert grad_batch_size(scripted, FASHION_MNIST_SPEC.shape, 250) == 250

    class FixedBatch(nn.Module):  # runs only at batch 4
        def forward(self, x):
            return model(x.view(4, *FASHION_MNIST_SPEC.shape))

    assert activation_bytes(FixedBatch(), FASHION_MNIST_SPEC.shape) is None
    pixels = torch.rand(4, *FASHION_MNIST_SPEC.shape)
    attacked = adversarial_examples(FixedBatch(), FASHION_MNIST_SPEC, pixels, torch.arange(4), eps=0.05)
    assert attacked.shape == pixels.shape


@pytest.mark.parametrize("batch_size", [0, -3])
def test_a_bad_attack_batch_size_is_refused(batch_size):
    model = ARCHITECTURES["cnn"]().eval()
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        adversarial_examples(model, FASHION_MNIST_SPEC, torch.rand(2, 1, 28, 28), torch.zeros(2), batch_size=batch_size)
