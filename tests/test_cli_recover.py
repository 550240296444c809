"""robustprune recover: a run folder in, a recovered run folder out (tiny budgets)."""

import json

import pytest
import torch

from robustprune.cli import main
from robustprune.structure import load_pruned

TINY = ["--steps", "2", "--batch-size", "8", "--pool-size", "8", "--synthesis-steps", "2", "--no-eval", "--quiet"]


def test_recover_writes_a_loadable_run_with_new_weights(tmp_path):
    source = tmp_path / "pruned"
    base = ["baseline", "--model", "zoo:mlp", "--method", "l1_uniform", "--target-params", "0.5", "--no-eval"]
    assert main([*base, "--out", str(source), "--quiet"]) == 0
    out = tmp_path / "recovered"
    assert main(["recover", str(source), "--out", str(out), "--expand", "2", *TINY]) == 0
    assert {"pruned.pt", "spec.json", "recover.json", "recover_loss.png", "report.json"} <= {
        p.name for p in out.iterdir()
    }
    before, spec, _ = load_pruned(source)
    after, spec_after, data = load_pruned(out)
    assert spec_after == spec and data["model"] == "zoo:mlp"
    assert [p.shape for p in after.parameters()] == [p.shape for p in before.parameters()]  # same compact shape
    assert any(not torch.equal(a, b) for a, b in zip(after.parameters(), before.parameters(), strict=True))
    report = json.loads((out / "report.json").read_text())
    assert report["provenance"]["method"] == "recover" and report["params"] == data["params"]
    summary = json.loads((out / "recover.json").read_text())
    assert len(summary["losses"]) == 2
    # a rerun into the same recover folder is fine
    assert main(["recover", str(source), "--out", str(out), "--expand", "1", *TINY]) == 0


def test_recover_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["recover", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), *TINY]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["recover", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--steps", "0"])
    assert exc.value.code == 2
