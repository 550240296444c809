"""Progress bars: drawn only on a terminal (or when forced), never in quiet mode, and the
per-25% text lines give way to the bar when one is drawn."""

import pytest
import torch
from torch import nn

from robustprune import InputSpec
from robustprune._progress import bars_enabled, progress_bar
from robustprune.probes.synthetic import SyntheticConfig, generate

SMALL = InputSpec(shape=(1, 12, 12), mean=(0.3,), std=(0.35,), num_classes=4)


def tiny_bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 4),
    ).eval()


def test_bars_follow_the_environment_and_quiet(monkeypatch):
    monkeypatch.setenv("ROBUSTPRUNE_PROGRESS", "1")
    assert bars_enabled() is True
    assert bars_enabled(quiet=True) is False
    monkeypatch.setenv("ROBUSTPRUNE_PROGRESS", "0")
    assert bars_enabled() is False
    monkeypatch.delenv("ROBUSTPRUNE_PROGRESS")
    assert bars_enabled() is False  # pytest captures stderr: not a terminal


def test_disabled_bar_writes_nothing(monkeypatch, capsys):
    monkeypatch.delenv("ROBUSTPRUNE_PROGRESS", raising=False)
    with progress_bar(5, "work") as bar:
        bar.update(5)
    assert "work" not in capsys.readouterr().err


@pytest.mark.parametrize("forced", [True, False])
def test_synthesis_draws_a_bar_or_prints_lines(monkeypatch, capsys, forced):
    monkeypatch.setenv("ROBUSTPRUNE_PROGRESS", "1" if forced else "0")
    lines: list[str] = []
    generate(tiny_bn_net(), SMALL, SyntheticConfig(kind="bn_stats", n=8, steps=4, batch_size=8), progress=lines.append)
    err = capsys.readouterr().err
    if forced:
        assert "bn_stats images" in err and "/4 [" in err  # tqdm may skip redraws; the total is there
        assert not any(line.startswith("batch") for line in lines)
    else:
        assert "bn_stats images" not in err
        assert any(line.startswith("batch 1/1, step 4/4") for line in lines)
