"""Interleaved latency comparisons: what runs, in which order, on which copy (no timing asserts)."""

import pytest
import torch
from torch import nn

from robustprune.evaluate.speed import compile_for, interleaved_latency, torch_threads
from robustprune.spec import InputSpec

SPEC = InputSpec(shape=(3, 12, 12), mean=(0.5,), std=(0.25,), num_classes=5)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    ).train()


@pytest.mark.parametrize("backend", ["eager", "channels_last", "torchscript"])
def test_each_backend_computes_the_eval_model_and_leaves_the_model_alone(backend):
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run = compile_for(model, SPEC, batch_size=4, backend=backend)
    out = run()
    expected = model.eval()(torch.zeros(4, *SPEC.shape))
    model.train()
    assert torch.allclose(out, expected, atol=1e-5)
    assert model.training and model[1].training  # the user's flags are untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model[0].weight.is_contiguous()  # channels_last converted a copy, not the model


@pytest.mark.slow
def test_the_compile_backend_computes_the_same():
    model = _model().eval()
    out = compile_for(model, SPEC, batch_size=2, backend="compile")()
    assert torch.allclose(out, model(torch.zeros(2, *SPEC.shape)), atol=1e-5)


def test_rounds_alternate_the_order_and_count_only_timed_runs():
    calls = []
    runners = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    stats = interleaved_latency(runners, runs=4, warmup=2)
    assert calls == ["a", "b", "b", "a"] * 3
    assert {name: s.runs for name, s in stats.items()} == {"a": 4, "b": 4}
    assert all(s.q1_ms <= s.median_ms <= s.q3_ms for s in stats.values())


def test_bad_arguments_are_refused_in_one_line():
    with pytest.raises(ValueError, match="backend"):
        compile_for(_model(), SPEC, 1, backend="tensorrt")
    with pytest.raises(ValueError, match="runs"):
        interleaved_latency({"a": lambda: None}, runs=0)
    with pytest.raises(ValueError, match="threads"), torch_threads(0):
        pass


def test_thread_setting_is_restored():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
