"""robustprune recover: a run folder in, a recovered run folder out (tiny budgets)."""

import json

import numpy as np
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
    assert summary["config"]["adv_fraction"] == 0.0  # the default: no adversarial inputs
    # a rerun into the same recover folder is fine; --adv-fraction turns adversarial inputs on
    assert main(["recover", str(source), "--out", str(out), "--adv-fraction", "0.5", *TINY]) == 0
    assert json.loads((out / "recover.json").read_text())["config"]["adv_fraction"] == 0.5


def test_feature_layers_from_the_command_line(tmp_path, capsys):
    source = tmp_path / "pruned"
    base = ["baseline", "--model", "zoo:mlp", "--method", "l1_uniform", "--target-params", "0.5", "--no-eval"]
    assert main([*base, "--out", str(source), "--quiet"]) == 0
    run = ["recover", str(source), *TINY]
    assert main([*run, "--out", str(tmp_path / "none"), "--features", "none"]) == 0
    assert json.loads((tmp_path / "none" / "recover.json").read_text())["feature_layers"] == []
    assert main([*run, "--out", str(tmp_path / "bogus"), "--features", "1,bogus"]) == 2
    assert "feature layers not found in both the pruned and the original model: bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([*run, "--out", str(tmp_path / "empty"), "--features", "a,,b"])
    assert exc.value.code == 2


def test_recover_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["recover", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), *TINY]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["recover", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--steps", "0"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["recover", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--adv-fraction", "1.5"])
    assert exc.value.code == 2


@pytest.mark.parametrize("command", ["recover", "search"])
def test_a_checkpoint_dir_that_is_a_file_is_refused_before_any_work(tmp_path, capsys, command):
    taken = tmp_path / "x.pt"
    taken.write_bytes(b"a file")
    if command == "recover":
        argv = ["recover", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--checkpoint-dir", str(taken)]
    else:
        flags = ["--recover", "--recover-checkpoint-dir", str(taken / "inside")]
        argv = ["search", "--model", "zoo:mlp", "--target-params", "0.5", "--out", str(tmp_path / "o"), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "is a file; it takes a folder" in err and len(err.strip().splitlines()) == 1
    assert taken.read_bytes() == b"a file" and not (tmp_path / "o").exists()


def test_search_then_recover_writes_one_run_with_both_stages(tmp_path):
    out = tmp_path / "run"
    search = ["search", "--model", "zoo:mlp", "--target-params", "0.8", "--trials", "1", "--steps", "1"]
    search += ["--n-probes", "16", "--probe-steps", "2", "--no-eval", "--quiet", "--out", str(out)]
    rec = ["--recover", "--recover-steps", "2", "--recover-batch-size", "8", "--recover-pool-size", "8"]
    rec += ["--recover-synthesis-steps", "2", "--recover-expand", "2"]
    assert main([*search, *rec]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"pruned.pt", "spec.json", "history.json", "recover.json", "recover_loss.png", "report.json"} <= names
    report = json.loads((out / "report.json").read_text())["provenance"]
    assert report["method"] == "search+recover" and report["stages"] == ["search", "recover"]
    assert report["recover"]["steps"] == 2 and report["recover"]["config"]["expand"] == 2
    assert len(json.loads((out / "history.json").read_text())["steps"]) >= 1
    # pruned.pt holds the recovered weights, not the search's
    plain = tmp_path / "plain"
    assert main([*search[:-1], str(plain)]) == 0
    recovered, _, data = load_pruned(out)
    searched, _, plain_data = load_pruned(plain)
    assert data["groups"] == plain_data["groups"]  # same kept channels (the search is seeded)
    assert any(not torch.equal(a, b) for a, b in zip(recovered.parameters(), searched.parameters(), strict=True))
    # the folder is a search+recover run: rerunning is fine, a plain search into it needs --overwrite
    assert main([*search, *rec]) == 0
    assert main(search) == 2


def test_search_recover_keeps_the_exclusion_and_a_failed_recovery_keeps_the_search(tmp_path, monkeypatch):
    import importlib

    recover_module = importlib.import_module("robustprune.recover")  # robustprune.recover is the function
    search = ["search", "--model", "zoo:mlp", "--target-params", "0.8", "--trials", "1", "--steps", "1"]
    search += ["--n-probes", "16", "--probe-steps", "2", "--no-eval", "--quiet", "--exclude", "3"]
    rec = ["--recover", "--recover-steps", "2", "--recover-batch-size", "8", "--recover-pool-size", "8"]
    rec += ["--recover-synthesis-steps", "2"]
    assert main([*search, *rec, "--out", str(tmp_path / "run")]) == 0
    spec = json.loads((tmp_path / "run" / "spec.json").read_text())
    assert spec["exclude"] == ["3"] and "3" not in spec["groups"]
    load_pruned(tmp_path / "run")  # the recorded exclusion rebuilds the recovered space

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(recover_module, "recover", interrupted)
    assert main([*search, *rec, "--out", str(tmp_path / "cut")]) == 130
    assert {"pruned.pt", "spec.json", "history.json"} <= {p.name for p in (tmp_path / "cut").iterdir()}
    assert not (tmp_path / "cut" / "recover.json").exists()
    monkeypatch.undo()
    assert main([*search, *rec, "--out", str(tmp_path / "cut")]) == 0  # the same command again finishes the run
    assert (tmp_path / "cut" / "recover.json").is_file()


def test_recover_resumes_with_its_checkpoints_in_the_run_folder_and_other_settings_exit_2(tmp_path, capsys):
    source = tmp_path / "pruned"
    base = ["baseline", "--model", "zoo:mlp", "--method", "l1_uniform", "--target-params", "0.5", "--no-eval"]
    assert main([*base, "--out", str(source), "--quiet"]) == 0
    out = tmp_path / "recovered"
    args = ["recover", str(source), "--out", str(out), "--checkpoint-dir", str(out)]
    assert main([*args, *TINY]) == 0
    assert (out / "recover.ckpt").is_file()
    assert main([*args, *TINY]) == 0  # the same line again: the checkpoint beside the run is ours, not foreign
    assert (out / "recover.ckpt").is_file() and (out / "recover.json").is_file()
    capsys.readouterr()
    assert main([*args, *TINY[:-1], "--steps", "3"]) == 2  # the checkpoint was made with other settings
    assert "Traceback" not in capsys.readouterr().err


def test_eval_data_reaches_recover_and_no_flag_stands_for_a_longer_one(tmp_path, capsys):
    source = tmp_path / "pruned"
    base = ["baseline", "--model", "zoo:mlp", "--method", "l1_uniform", "--target-params", "0.5", "--no-eval"]
    assert main([*base, "--out", str(source), "--quiet"]) == 0
    data = tmp_path / "mine.npz"
    np.savez(data, x=np.random.default_rng(0).random((6, 1, 28, 28), dtype=np.float32), y=np.arange(6) % 10)
    out = tmp_path / "recovered"
    assert main(["recover", str(source), "--out", str(out), *TINY[:-2], "--quiet", "--data", str(data)]) == 0
    assert json.loads((out / "report.json").read_text())["provenance"]["examples"] == 6
    with pytest.raises(SystemExit) as exc:  # an abbreviation of --data-root is not taken for it
        main(["eval", "--model", "zoo:mlp", "--data-ro", str(tmp_path)])
    assert exc.value.code == 2


def test_a_diverging_recovery_is_one_line_naming_the_flags_that_bring_it_back(tmp_path, capsys):
    source = tmp_path / "pruned"
    base = ["baseline", "--model", "zoo:mlp", "--method", "l1_uniform", "--target-params", "0.5", "--no-eval"]
    assert main([*base, "--out", str(source), "--quiet"]) == 0
    capsys.readouterr()
    tiny = [a if a != "2" else "3" for a in TINY[:2]] + TINY[2:]  # three steps: it blows up on the second
    assert main(["recover", str(source), "--out", str(tmp_path / "r"), "--lr", "1e30", *tiny]) == 2
    err = capsys.readouterr().err
    assert "recovery diverged" in err and "--lr: 1e+30" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["recover", str(source), "--out", str(tmp_path / "r"), "--lr", "0", *TINY])  # refused by argparse
