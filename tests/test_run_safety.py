"""No lost or mixed-up data: run folders are recognized by content, written in an order a kill cannot mix,
held by one process at a time, tied to their weights and their original; loading refuses what would unpickle."""

import io
import json
import os
import signal
import zipfile

import pytest
import torch
from torch import nn

import robustprune as rp
import robustprune._io as io_module
import robustprune.models as models
from robustprune._io import RunFolderError, sigint_deferred, staged_directory
from robustprune.cli import main
from robustprune.models import ModelRefError, load_model
from robustprune.probes.cache import weights_hash
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.recover.checkpoint import CheckpointMismatchError, load_checkpoint
from robustprune.structure import load_pruned

BASELINE = [
    "baseline",
    "--model",
    "zoo:mlp",
    "--method",
    "l1_uniform",
    "--target-params",
    "0.6",
    "--no-eval",
    "--quiet",
]
TINY_RECOVER = ["--steps", "2", "--batch-size", "8", "--pool-size", "8", "--synthesis-steps", "2", "--no-eval"]


def err(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0]
    return lines[0]


def test_a_folder_of_the_users_files_with_robustprune_names_is_not_taken_for_a_run(tmp_path, capsys):
    out = tmp_path / "project"
    out.mkdir()
    (out / "spec.json").write_text(json.dumps({"shape": [1, 28, 28], "mean": [0.5], "std": [0.5]}))  # an InputSpec
    (out / "report.json").write_text('{"mine": true}')
    (out / "history.json").write_text("my history")
    assert main([*BASELINE, "--out", str(out)]) == 2
    assert "spec.json" in err(capsys)
    assert (out / "report.json").read_text() == '{"mine": true}'
    # --overwrite writes the run's own files; a file of the user's that the run does not write stays
    assert main([*BASELINE, "--out", str(out), "--overwrite"]) == 0
    assert (out / "history.json").read_text() == "my history"
    rp.load_pruned(out)


def test_the_report_records_the_command_seed_and_settings_that_made_the_model(tmp_path):
    out = tmp_path / "run"
    argv = [*BASELINE, "--seed", "5", "--round-to", "4", "--exclude", "3", "--out", str(out)]
    assert main(argv) == 0
    provenance = json.loads((out / "report.json").read_text())["provenance"]
    assert provenance["seed"] == 5 and provenance["round_to"] == 4 and provenance["exclude"] == ["3"]
    assert (
        provenance["command"].startswith("robustprune baseline --model zoo:mlp") and "--seed 5" in provenance["command"]
    )


def test_a_second_process_writing_the_same_out_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    with io_module.run_folder_claim(out) as held:  # stands for another robustprune process writing run/
        assert held
        assert main([*BASELINE, "--out", str(out)]) == 2
        assert "another robustprune process is writing" in err(capsys)
    assert not out.exists()
    assert main([*BASELINE, "--out", str(out)]) == 0  # released: the folder is free again


def test_a_lock_folder_this_user_cannot_write_does_not_stop_the_command(tmp_path, monkeypatch):
    real_open = os.open

    def refused(path, *args, **kwargs):  # what another user's lock file or folder does to this user
        if "robustprune-locks" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(io_module.os, "open", refused)
    monkeypatch.setattr(io_module.os, "access", lambda path, mode: "robustprune-locks" not in str(path))
    out = tmp_path / "run"
    with io_module.run_folder_claim(out) as held:
        assert held
    assert main([*BASELINE, "--out", str(out)]) == 0


def test_recover_refuses_an_original_with_other_weights_and_its_own_input_as_out(tmp_path, capsys):
    source = tmp_path / "pruned"
    assert main([*BASELINE, "--out", str(source)]) == 0
    data = json.loads((source / "spec.json").read_text())
    original, _ = load_model("zoo:mlp")
    assert data["original_sha256"] == weights_hash(original)
    other = {k: v + 0.01 if v.is_floating_point() else v for k, v in original.state_dict().items()}
    torch.save(other, tmp_path / "other.pt")
    base = ["recover", str(source), *TINY_RECOVER, "--quiet"]
    assert (
        main([*base, "--out", str(tmp_path / "r"), "--original", "zoo:mlp", "--weights", str(tmp_path / "other.pt")])
        == 2
    )
    assert "is not the model" in err(capsys)
    assert main([*base, "--out", str(source)]) == 2
    assert "is the run folder being read" in err(capsys)
    torch.save(original.state_dict(), tmp_path / "same.pt")  # the same weights, from another file: accepted
    assert (
        main([*base, "--out", str(tmp_path / "r"), "--original", "zoo:mlp", "--weights", str(tmp_path / "same.pt")])
        == 0
    )


def test_weights_and_spec_of_two_runs_do_not_load_as_one(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main([*BASELINE, "--out", str(a)]) == 0
    assert (
        main(
            [
                *BASELINE[:-4],
                "--target-params",
                "0.6",
                "--no-eval",
                "--quiet",
                "--method",
                "random_uniform",
                "--out",
                str(b),
            ]
        )
        == 0
    )
    (a / "pruned.pt").write_bytes((b / "pruned.pt").read_bytes())  # what a kill mid-commit could leave
    with pytest.raises(RunFolderError, match="is not the weights file"):
        load_pruned(a)


def test_same_model_saves_to_the_same_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main([*BASELINE, "--out", str(a)]) == 0
    assert main([*BASELINE, "--out", str(b)]) == 0
    assert (a / "pruned.pt").read_bytes() == (b / "pruned.pt").read_bytes()
    assert (a / "spec.json").read_text() == (b / "spec.json").read_text()


def test_a_commit_cut_short_leaves_no_old_report_beside_new_files(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert main([*BASELINE, "--out", str(out)]) == 0
    assert (out / "report.json").is_file()
    moved = []
    real_replace = os.replace

    def replace_then_die(src, dst):
        if moved:
            raise OSError("killed")  # the second file never arrives
        moved.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(io_module.os, "replace", replace_then_die)
    with pytest.raises(OSError), staged_directory(out, owned=io_module.OWNED_FILES) as staging:
        (staging / "pruned.pt").write_text("new")
        (staging / "spec.json").write_text("new")
    assert moved and not (out / "report.json").exists()


def test_sigterm_is_held_back_until_the_commit_is_done():
    delivered = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: delivered.append(signum))
    try:
        with sigint_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            assert delivered == []  # not while the files move
        assert delivered == [signal.SIGTERM]  # delivered once the block is done
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_eval_json_never_writes_over_a_run_folders_file(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*BASELINE, "--out", str(out)]) == 0
    before = (out / "spec.json").read_text()
    assert main(["eval", "--model", str(out), "--json", str(out / "spec.json"), "--quiet"]) == 2
    assert "file of a robustprune run folder" in err(capsys)
    assert (out / "spec.json").read_text() == before


class _Payload:  # stands for any pickle: it leaves a mark when it runs
    mark = None

    def __reduce__(self):
        return (open, (str(self.mark), "w"))


def _program(path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval()
    torch.export.save(torch.export.export(model, (torch.zeros(1, 4),)), str(path))


def test_a_program_archive_that_would_unpickle_is_refused(tmp_path):
    clean = tmp_path / "clean.pt2"
    _program(clean)
    models.check_program_archive(clean)  # what torch.export.save writes from tensors passes
    _Payload.mark = tmp_path / "PICKLE_RAN"
    buffer = io.BytesIO()
    torch.save(_Payload(), buffer)
    crafted = tmp_path / "crafted.pt2"
    with zipfile.ZipFile(clean) as src, zipfile.ZipFile(crafted, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("data/weights/model_weights_config.json"):
                config = json.loads(data)
                config["config"]["1.bias"]["use_pickle"] = True
                data = json.dumps(config).encode()
            if item.filename.endswith("data/weights/weight_1"):
                data = buffer.getvalue()
            dst.writestr(item, data)
    with pytest.raises(ModelRefError, match="pickle"):
        load_model(str(crafted), spec=rp.InputSpec((4,), (0.0,), (1.0,), 2))
    assert not _Payload.mark.exists()


def test_a_damaged_recovery_checkpoint_is_a_one_line_error(tmp_path):
    (tmp_path / "recover.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match="not a readable recovery checkpoint"):
        load_checkpoint(tmp_path, {"steps": 2})


def test_recover_leaves_the_global_random_state_alone():
    original, spec = load_model("zoo:mlp")
    space = rp.PruneSpace(original, spec)
    candidate = {g.name: range(g.size // 2) for g in space.groups}
    pruned = rp.export(space, candidate)
    config = rp.RecoverConfig(steps=1, batch_size=4, pool_size=4, expand=2, synthetic=SyntheticConfig(steps=1))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    rp.recover(pruned, original, space.spec, config, candidate=candidate, quiet=True)
    assert torch.equal(torch.get_rng_state(), before)
