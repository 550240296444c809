"""Known-answer tests for robustprune.evaluate (metrics, attacks, cost)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robustprune.evaluate.attacks import adversarial_examples, robust_accuracy
from robustprune.evaluate.cost import count_macs_params, latency_ms
from robustprune.evaluate.metrics import (
    accuracy,
    auroc,
    expected_calibration_error,
    max_softmax,
    ood_auroc,
    predict_logits,
)
from robustprune.spec import InputSpec
from robustprune.zoo.architectures import ARCHITECTURES

SPEC = InputSpec(shape=(1, 28, 28), mean=(0.2860,), std=(0.3530,), num_classes=10)
SPEC_HALF = InputSpec(shape=(1, 28, 28), mean=(0.5,), std=(0.25,), num_classes=10)


def _logits_from_probs(probs: list[list[float]]) -> torch.Tensor:
    """Logits whose softmax is exactly ``probs`` (log is a valid inverse of softmax up to a constant)."""
    return torch.tensor(probs, dtype=torch.float64).log()


# ---------------------------------------------------------------- accuracy / predict_logits


def test_accuracy_half_right():
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0], [0.0, 5.0]])
    labels = torch.tensor([0, 1, 1, 0])  # rows 0 and 1 right, rows 2 and 3 wrong
    assert accuracy(logits, labels) == 0.5


class _FixedClass(nn.Module):
    """Predicts class 3 for every input (one-hot logits), recording whether it ran in training mode."""

    def __init__(self) -> None:
        super().__init__()
        self.seen_training: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen_training.append(self.training)
        return nn.functional.one_hot(torch.full((x.shape[0],), 3), 10).float()


def test_predict_logits_model_right_on_half():
    model = _FixedClass().train()
    pixels = torch.rand(10, *SPEC.shape)
    labels = torch.tensor([3, 3, 3, 3, 3, 0, 1, 2, 4, 5])
    logits = predict_logits(model, SPEC, pixels, batch_size=3)
    assert logits.shape == (10, 10) and logits.dtype == torch.float32 and logits.device.type == "cpu"
    assert accuracy(logits, labels) == 0.5
    assert model.seen_training == [False] * 4  # 4 batches of <= 3, all in eval mode
    assert model.training  # mode restored


class _FirstFeatures(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :10]


def test_predict_logits_normalizes_and_keeps_order():
    pixels = torch.rand(7, *SPEC_HALF.shape)
    logits = predict_logits(_FirstFeatures(), SPEC_HALF, pixels, batch_size=2)
    expected = ((pixels - 0.5) / 0.25).flatten(1)[:, :10]
    torch.testing.assert_close(logits, expected)
    assert not logits.requires_grad


# ---------------------------------------------------------------- calibration


def test_ece_confident_and_right_is_zero():
    logits = torch.tensor([[50.0, 0.0, 0.0], [0.0, 50.0, 0.0], [0.0, 0.0, 50.0]])
    assert expected_calibration_error(logits, torch.tensor([0, 1, 2])) == pytest.approx(0.0, abs=1e-12)


def test_ece_confident_and_wrong_is_one():
    logits = torch.tensor([[50.0, 0.0, 0.0], [0.0, 50.0, 0.0], [0.0, 0.0, 50.0]])
    assert expected_calibration_error(logits, torch.tensor([1, 2, 0])) == pytest.approx(1.0, abs=1e-12)


def test_ece_two_bins_hand_computed():
    # n_bins=2: bins [0, 0.5] and (0.5, 1].
    # Bin 0: two examples at confidence 0.25 (uniform over 4 classes, predicted class 0), one right:
    #        acc 1/2, conf 1/4, gap 1/4, weight 2/6.
    # Bin 1: four examples at confidence 0.75 (predicted class 0), one right: acc 1/4, conf 3/4, gap 1/2, weight 4/6.
    # ECE = 2/6 * 1/4 + 4/6 * 1/2 = 1/12 + 4/12 = 5/12.
    # (Unweighted mean of bin gaps would be 3/8; the un-binned |mean acc - mean conf| = |1/3 - 7/12| = 1/4.)
    uniform = [0.25, 0.25, 0.25, 0.25]
    peaked = [0.75, 0.25 / 3, 0.25 / 3, 0.25 / 3]
    logits = _logits_from_probs([uniform, uniform, peaked, peaked, peaked, peaked])
    labels = torch.tensor([0, 1, 0, 1, 2, 3])
    assert expected_calibration_error(logits, labels, n_bins=2) == pytest.approx(5 / 12, abs=1e-9)


def test_ece_bin_upper_edge_is_inclusive():
    # Confidence exactly 0.5 belongs to bin [0, 0.5], not (0.5, 1].
    # Right: bin 0 {0.5, right} gap 1/2, bin 1 {1.0, wrong} gap 1 -> (1/2 + 1) / 2 = 3/4.
    # If 0.5 fell into bin 1: {0.5 right, 1.0 wrong} acc 1/2 conf 3/4 -> 1/4.
    logits = torch.tensor([[0.0, 0.0], [100.0, 0.0]])
    labels = torch.tensor([0, 1])
    assert expected_calibration_error(logits, labels, n_bins=2) == pytest.approx(0.75, abs=1e-9)


def test_max_softmax():
    probs = max_softmax(_logits_from_probs([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]]))
    torch.testing.assert_close(probs, torch.tensor([0.7, 0.5], dtype=torch.float64))


# ---------------------------------------------------------------- AUROC


def test_auroc_separated_reversed_and_equal():
    high, low = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0.3, 0.2])
    assert auroc(high, low) == 1.0
    assert auroc(low, high) == 0.0
    assert auroc(torch.full((4,), 0.5), torch.full((3,), 0.5)) == 0.5


def test_auroc_ties_hand_computed():
    # Pairs (in, out): (0.9,0.5)=1, (0.9,0.1)=1, (0.5,0.5)=1/2, (0.5,0.1)=1 -> 3.5 / 4.
    assert auroc([0.9, 0.5], [0.5, 0.1]) == pytest.approx(0.875)


def test_ood_auroc_uses_max_softmax():
    confident = torch.tensor([[9.0, 0.0, 0.0], [0.0, 8.0, 0.0]])  # large max-softmax
    flat = torch.tensor([[0.1, 0.0, 0.0], [0.0, 0.0, 0.2]])  # max-softmax near 1/3
    assert ood_auroc(confident, flat) == 1.0
    assert ood_auroc(flat, confident) == 0.0


# ---------------------------------------------------------------- attacks


@pytest.fixture(scope="module")
def cnn_setup():
    torch.manual_seed(0)
    model = ARCHITECTURES["cnn"]().eval()
    pixels = torch.rand(32, *SPEC.shape)
    labels = predict_logits(model, SPEC, pixels).argmax(dim=1)
    return model, pixels, labels


def test_clean_accuracy_of_own_predictions_is_one(cnn_setup):
    model, pixels, labels = cnn_setup
    assert accuracy(predict_logits(model, SPEC, pixels), labels) == 1.0


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_adversarial_examples_stay_in_ball_and_range(cnn_setup, attack):
    model, pixels, labels = cnn_setup
    eps = 0.1
    x_adv = adversarial_examples(model, SPEC, pixels, labels, attack=attack, eps=eps, steps=5, batch_size=16)
    assert x_adv.shape == pixels.shape
    assert (x_adv - pixels).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert not torch.equal(x_adv, pixels)
    assert robust_accuracy(model, SPEC, pixels, labels, attack=attack, eps=eps, steps=5) <= 1.0


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_eps_zero_keeps_accuracy(cnn_setup, attack):
    model, pixels, labels = cnn_setup
    assert robust_accuracy(model, SPEC, pixels, labels, attack=attack, eps=0.0, steps=3) == 1.0


def test_pgd_is_seeded_and_leaves_global_rng_alone(cnn_setup):
    model, pixels, labels = cnn_setup
    state = torch.get_rng_state()
    kwargs = dict(attack="pgd", eps=0.1, steps=3)
    first = adversarial_examples(model, SPEC, pixels, labels, seed=1, **kwargs)
    second = adversarial_examples(model, SPEC, pixels, labels, seed=1, **kwargs)
    other = adversarial_examples(model, SPEC, pixels, labels, seed=2, **kwargs)
    assert torch.equal(first, second)
    assert not torch.equal(first, other)  # the seed really drives the random start
    assert torch.equal(torch.get_rng_state(), state)


def test_attack_restores_per_module_training_mode():
    torch.manual_seed(0)
    model = ARCHITECTURES["cnn"]().train()
    model[1].eval()  # a frozen BatchNorm: torchattacks' own restore would flip it back to train
    pixels = torch.rand(8, *SPEC.shape)
    labels = torch.zeros(8, dtype=torch.long)
    running_mean = model[1].running_mean.clone()
    robust_accuracy(model, SPEC, pixels, labels, attack="pgd", eps=0.1, steps=2)
    assert model.training and model[4].training  # top level and the second BatchNorm
    assert not model[1].training
    assert torch.equal(model[1].running_mean, running_mean)  # attacked in eval mode: no BN statistics update


def test_attack_argument_validation(cnn_setup):
    model, pixels, labels = cnn_setup
    with pytest.raises(ValueError, match="fgsm, pgd"):
        robust_accuracy(model, SPEC, pixels, labels, attack="cw")
    for eps in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="eps"):
            adversarial_examples(model, SPEC, pixels, labels, eps=eps)


def _linear_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()


def test_pgd_breaks_linear_model_within_pixel_eps():
    model = _linear_model()
    torch.manual_seed(1)
    pixels = torch.rand(64, *SPEC_HALF.shape)
    labels = predict_logits(model, SPEC_HALF, pixels).argmax(dim=1)
    eps = 0.3
    x_adv = adversarial_examples(model, SPEC_HALF, pixels, labels, attack="pgd", eps=eps, steps=10)
    distance = (x_adv - pixels).abs().amax()
    assert distance <= eps + 1e-6
    # Pixel-space eps, not eps in normalized units (which would be eps * std = 0.075 in pixels):
    assert distance >= eps - 1e-6
    clean = accuracy(predict_logits(model, SPEC_HALF, pixels), labels)
    assert clean == 1.0
    assert robust_accuracy(model, SPEC_HALF, pixels, labels, attack="pgd", eps=eps, steps=10) < clean


def test_fgsm_matches_analytic_step_through_normalization():
    model = _linear_model()
    torch.manual_seed(2)
    pixels = torch.rand(16, *SPEC_HALF.shape)
    labels = torch.randint(0, 10, (16,))
    eps = 0.05
    # Expected: x + eps * sign(d CE(model(normalize(x))) / dx), clamped to [0, 1], all in pixel space.
    x = pixels.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(model((x - 0.5) / 0.25), labels)
    (grad,) = torch.autograd.grad(loss, x)
    expected = (pixels + eps * grad.sign()).clamp(0.0, 1.0)
    x_adv = adversarial_examples(model, SPEC_HALF, pixels, labels, attack="fgsm", eps=eps)
    torch.testing.assert_close(x_adv, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "apgd-ce"])
def test_attacks_on_any_pixel_range_and_shape_match_unit_images(attack):
    """The same linear model seen as (1, 28, 28) images in [0, 1], in 0..255 pixels, and as 784 features in
    [-1, 1]: each attack gives the same examples, mapped (eps is a fraction of the pixel range)."""
    model = _linear_model()
    torch.manual_seed(3)
    pixels = torch.rand(16, *SPEC_HALF.shape)
    labels = predict_logits(model, SPEC_HALF, pixels).argmax(dim=1)
    options = {"attack": attack, "eps": 0.1, "steps": 5, "seed": 4}
    unit = adversarial_examples(model, SPEC_HALF, pixels, labels, **options)
    wide = InputSpec(shape=(1, 28, 28), mean=(127.5,), std=(63.75,), num_classes=10, value_range=(0.0, 255.0))
    x_wide = adversarial_examples(model, wide, pixels * 255.0, labels, **options)
    torch.testing.assert_close(x_wide / 255.0, unit, atol=1e-4, rtol=0)
    flat = InputSpec(shape=(784,), mean=(0.0,), std=(0.5,), num_classes=10, value_range=(-1.0, 1.0))
    x_flat = adversarial_examples(model, flat, pixels.flatten(1) * 2.0 - 1.0, labels, **options)
    torch.testing.assert_close((x_flat.view_as(pixels) + 1.0) / 2.0, unit, atol=1e-4, rtol=0)
    assert x_flat.shape == (16, 784) and x_flat.min() >= -1.0 and x_flat.max() <= 1.0
    assert (x_flat - (pixels.flatten(1) * 2.0 - 1.0)).abs().amax() <= 0.2 + 1e-5  # eps 0.1 of a range of 2
    assert accuracy(predict_logits(model, flat, x_flat), labels) < 1.0


def test_attacks_refuse_pixels_outside_the_spec_range():
    model = _linear_model()
    wide = InputSpec(shape=(1, 28, 28), mean=(127.5,), std=(63.75,), num_classes=10, value_range=(0.0, 255.0))
    with pytest.raises(ValueError, match=r"value range \[0, 255\]"):
        adversarial_examples(model, wide, torch.full((2, 1, 28, 28), 300.0), torch.zeros(2, dtype=torch.long))


# ---------------------------------------------------------------- cost


def test_count_macs_params_linear():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    macs, params = count_macs_params(model, SPEC)
    assert params == 784 * 10 + 10
    # torch-pruning counts 784 * 10 multiply-accumulates plus one op per output for the bias.
    assert macs == 784 * 10 + 10
    assert isinstance(macs, int) and isinstance(params, int)


def test_latency_is_positive_float_and_restores_mode():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).train()
    ms = latency_ms(model, SPEC, batch_size=4, repeats=3, warmup=1)
    assert isinstance(ms, float) and ms > 0.0
    assert model.training
