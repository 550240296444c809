"""CLI: every subcommand's help, usage errors, and the search/demo/bench/export/plot round trips on small models."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import robustprune.bench
from robustprune import zoo
from robustprune._io import claim, file_sha256
from robustprune.cli import build_parser, main
from robustprune.data.fashion_mnist import fashion_mnist_available
from robustprune.structure import load_pruned

SUBCOMMANDS = ["eval", "baseline", "search", "demo", "bench", "export", "plot", "zoo"]
FAST_SEARCH = ["--trials", "2", "--steps", "3", "--n-probes", "32", "--probe-steps", "5", "--no-eval", "--quiet"]


def test_every_subcommand_is_listed_and_has_examples(capsys):
    help_text = build_parser().format_help()
    for sub in SUBCOMMANDS:
        assert sub in help_text
        with pytest.raises(SystemExit) as exc:
            main([sub, "--help"])
        assert exc.value.code == 0
        assert "examples:" in capsys.readouterr().out, sub


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["search", "--model", "zoo:nope", "--target-macs", "0.5", "--out", "{tmp}/run"], "unknown zoo model"),
        (["search", "--model", "zoo:mlp", "--out", "{tmp}/run"], "--target-macs"),
        (["search", "--model", "zoo:mlp", "--target-params", "0.5", "--out", "{tmp}/a_file/run"], "is a file"),
        (
            ["search", "--model", "zoo:mlp", "--target-params", "0.5", "--latency-batch", "8", "--out", "{tmp}/r"],
            "latency",
        ),
        (
            ["search", "--model", "zoo:mlp", "--target-params", "0.5", "--recover-steps", "5", "--out", "{tmp}/r"],
            "--recover",
        ),
        (["eval", "--model", "zoo:mlp", "--device", "mps"], "not supported"),
        (
            ["search", "--model", "zoo:mlp", "--target-params", "0.5", "--floor", "fidelity", "--out", "{tmp}/run"],
            "PROXY=VALUE",
        ),
        (
            ["search", "--model", "zoo:mlp", "--target-params", "0.5", "--compensation", "magic", "--out", "{tmp}/run"],
            "compensation",
        ),
        (
            ["baseline", "--model", "zoo:cnn", "--method", "l1_uniform", "--target-macs", "0.5", "--exclude", "4", "x9"]
            + ["--out", "{tmp}/run"],
            "--exclude: no module named x9",
        ),
        (["bench", "--suite", "nope", "--out", "{tmp}/run"], "no benchmark suite"),
        (["export", "--out", "{tmp}/m.ts"], "run folder"),
        (["plot", "{tmp}"], "not a search run folder"),
    ],
)
def test_usage_errors_are_one_line_exit_2_and_leave_nothing(argv, message, tmp_path, capsys):
    (tmp_path / "a_file").write_text("not a folder")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_missing_folders_above_a_run_folder_are_made_and_removed_again_on_failure(tmp_path, monkeypatch):
    base = ["baseline", "--model", "zoo:mlp", "--method", "l1_uniform", "--target-params", "0.5", "--no-eval"]
    assert main([*base, "--out", str(tmp_path / "runs" / "deeper" / "mlp"), "--quiet"]) == 0
    assert (tmp_path / "runs" / "deeper" / "mlp" / "pruned.pt").is_file()

    def broken(*args, **kwargs):
        raise RuntimeError("interrupted write")

    monkeypatch.setattr("robustprune.structure.persist.save_pruned", broken)
    monkeypatch.setattr("robustprune.baselines.PruneResult.save", broken, raising=False)
    assert main([*base, "--out", str(tmp_path / "new" / "deeper" / "mlp"), "--quiet"]) == 1
    assert not (tmp_path / "new").exists()


def test_bad_target_is_exit_2_from_argparse(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "robustprune",
            "search",
            "--model",
            "zoo:mlp",
            "--target-macs",
            "1.5",
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "fraction in (0, 1)" in out.stderr


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "mlp"
    code = main(["search", "--model", "zoo:mlp", "--target-params", "0.6", "--out", str(run), *FAST_SEARCH])
    assert code == 0
    return run


def test_search_writes_the_run_folder(search_run):
    names = {p.name for p in search_run.iterdir()}
    assert {"pruned.pt", "spec.json", "history.json", "front.json", "report.json", "plots"} <= names
    assert not any(n.startswith(".partial") for n in names)
    assert {p.name for p in (search_run / "plots").iterdir()} >= {"front.png", "steps.svg", "amounts.png"}
    report = json.loads((search_run / "report.json").read_text())
    model, _, spec_data = load_pruned(search_run)
    assert report["params"] == sum(p.numel() for p in model.parameters()) == spec_data["params"]
    assert spec_data["params"] <= 0.6 * spec_data["original_params"]


@pytest.mark.parametrize("fmt", ["torchscript", "torch-export", "onnx", "state_dict"])
def test_export_formats(search_run, tmp_path, fmt):
    out = tmp_path / f"model.{fmt}"
    assert main(["export", str(search_run), "--format", fmt, "--out", str(out), "--quiet"]) == 0
    model, _, _ = load_pruned(search_run)
    x = torch.rand(2, 1, 28, 28)
    if fmt == "torchscript":
        assert torch.allclose(torch.jit.load(str(out))(x), model(x), atol=1e-6)
    elif fmt == "torch-export":
        assert torch.allclose(torch.export.load(str(out)).module()(x), model(x), atol=1e-6)
    elif fmt == "onnx":
        ort = pytest.importorskip("onnxruntime")
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
        assert torch.allclose(got, model(x), atol=1e-4)
    else:
        state = torch.load(out, weights_only=True)
        assert set(state) == set(model.state_dict())
    assert json.loads(out.with_name(out.name + ".inputspec.json").read_text())["num_classes"] == 10


def test_plot_redraws_and_compares(search_run, tmp_path):
    assert main(["plot", str(search_run), "--out", str(tmp_path / "one"), "--quiet"]) == 0
    assert (tmp_path / "one" / "front.png").is_file()
    assert main(["plot", str(search_run), str(search_run), "--out", str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / "compare_fronts.svg").is_file()
    # the --help example: several runs into a folder that does not exist yet
    assert main(["plot", str(search_run), str(search_run), "--out", str(tmp_path / "compare"), "--quiet"]) == 0
    assert (tmp_path / "compare" / "compare_fronts.png").is_file()


def test_export_and_plot_never_replace_files_they_were_not_asked_to(search_run, tmp_path, capsys):
    taken = tmp_path / "weights.pt"
    taken.write_bytes(b"the user's own file")
    assert main(["export", str(search_run), "--format", "state_dict", "--out", str(taken), "--quiet"]) == 2
    assert taken.read_bytes() == b"the user's own file"
    assert main(["export", str(search_run), "--format", "state_dict", "--out", str(taken), "--overwrite"]) == 0
    own = search_run / "pruned.pt"
    before = own.read_bytes()
    assert main(["export", str(search_run), "--format", "state_dict", "--out", str(own), "--overwrite"]) == 2
    assert own.read_bytes() == before
    assert main(["plot", str(search_run), "--out", str(taken), "--quiet"]) == 2
    assert "--out takes a folder" in capsys.readouterr().err
    # the input-spec file written beside --out is the user's too
    fresh = tmp_path / "fresh.pt"
    sidecar = tmp_path / "fresh.pt.inputspec.json"
    sidecar.write_text('{"mine": true}')
    assert main(["export", str(search_run), "--format", "state_dict", "--out", str(fresh), "--quiet"]) == 2
    assert sidecar.read_text() == '{"mine": true}' and not fresh.exists()


def test_export_from_spec_and_weights_takes_only_the_run_folders_files(search_run, tmp_path, capsys):
    other = search_run / "zeroed.pt"  # another weights file in the run folder: never exported in pruned.pt's place
    other.write_bytes((search_run / "pruned.pt").read_bytes())
    out = tmp_path / "sd.pt"
    spec = str(search_run / "spec.json")
    try:
        base = ["export", "--format", "state_dict", "--out", str(out), "--quiet"]
        assert main([*base, "--spec", spec, "--weights", str(other)]) == 2
        assert main([*base, str(search_run), "--spec", spec, "--weights", str(search_run / "pruned.pt")]) == 2
        assert "not both" in capsys.readouterr().err
        assert not out.exists()
        assert main([*base, "--spec", spec, "--weights", str(search_run / "pruned.pt")]) == 0
    finally:
        other.unlink()


def test_plot_of_a_latency_only_search(search_run, tmp_path):
    import shutil

    from robustprune.plots import plot_run

    run = tmp_path / "latency"
    shutil.copytree(search_run, run)
    history = json.loads((run / "history.json").read_text())
    for step in history["steps"]:  # a --target-latency search: neither a MAC nor a params target per step
        step["target"].update(macs=None, params=None, latency=0.5)
    (run / "history.json").write_text(json.dumps(history))
    assert {p.name for p in plot_run(run, tmp_path / "plots")} >= {"steps.png", "front.png"}


def test_demo_runs_on_a_small_model(tmp_path, capsys):
    out = tmp_path / "demo"
    assert (
        main(["demo", "--model", "zoo:mlp", "--target-macs", "0.7", "--trials", "2", "--out", str(out), "--quiet"]) == 0
    )
    text = capsys.readouterr().out
    assert "original" in text and "pruned" in text and "MACs" in text
    assert {"report.json", "original.json", "pruned.pt", "plots"} <= {p.name for p in out.iterdir()}


@pytest.mark.slow
@pytest.mark.skipif(not fashion_mnist_available(), reason="Fashion-MNIST not installed")
def test_bench_quick_suite_produces_tables_and_resumes(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--suite", "quick", "--out", str(out), "--quiet"]) == 0
    for name in ("results.csv", "results.json", "summary.md"):
        assert (out / name).is_file()
    rows = json.loads((out / "results.json").read_text())["rows"]
    methods = {r["method"] for r in rows}
    assert {"search", "l1_uniform", "l1_uniform+bn", "global_magnitude"} == methods
    assert {r["model"] for r in rows} == {"mlp", "cnn"}
    for r in rows:
        assert r["report"]["provenance"]["commit"] and r["kept_macs"] <= 1.0
        key = "kept_params" if r["target_kind"] == "params" else "kept_macs"
        assert r[key] <= r["target"] + 1e-9
    assert (out / "plots" / "cnn.png").is_file()
    stamp = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    assert main(["bench", "--suite", "quick", "--out", str(out), "--quiet"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()} == stamp, "finished cells are not redone"
    # the same folder under other settings: refused, not silently mixed into one table
    other = json.loads((Path(robustprune.bench.SUITE_DIR) / "quick.json").read_text())
    other["eval"]["n_attack"] = 100
    (tmp_path / "other.json").write_text(json.dumps(other))
    capsys.readouterr()
    assert main(["bench", "--suite", str(tmp_path / "other.json"), "--out", str(out), "--quiet"]) == 2
    assert "other suite settings" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()} == stamp


def test_demo_default_output_folder_is_created(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a fresh clone has no runs/ folder
    assert main(["demo", "--model", "zoo:mlp", "--target-macs", "0.8", "--trials", "1", "--quiet"]) == 0
    assert (tmp_path / "runs" / "demo" / "report.json").is_file()


def test_suite_search_config_leaves_the_suite_unchanged():
    suite = robustprune.bench.load_suite("quick")
    before = json.dumps(suite.search, sort_keys=True)
    first = suite.search_config("macs", 0.5, 0)
    second = suite.search_config("macs", 0.5, 0)
    assert json.dumps(suite.search, sort_keys=True) == before
    assert first.probes.synthetic == second.probes.synthetic
    assert first.probes.synthetic.n == suite.search["probes"]["synthetic"]["n"]


@pytest.mark.skipif(not fashion_mnist_available(), reason="Fashion-MNIST not installed")
def test_bench_workers_give_the_same_cells_as_one_process(tmp_path):
    suite = {
        "models": {"mlp": "params"},
        "methods": ["l1_uniform", "global_magnitude"],
        "targets": [0.6],
        "seeds": [0],
        "search": {},
        "eval": {"n_attack": 50, "n_corruption": 20, "n_ood": 100, "latency": False},
    }
    (tmp_path / "tiny.json").write_text(json.dumps(suite))
    for name, workers in (("serial", "1"), ("parallel", "2")):
        args = ["bench", "--suite", str(tmp_path / "tiny.json"), "--out", str(tmp_path / name), "--quiet"]
        assert main([*args, "--workers", workers, "--threads", "1"]) == 0
    for method in suite["methods"]:
        serial, parallel = (
            json.loads((tmp_path / name / "cells" / f"mlp__{method}__0.6__s0.json").read_text())["report"]
            for name in ("serial", "parallel")
        )
        for key in ("clean_accuracy", "robust_accuracy", "corruption_accuracy", "macs", "params"):
            assert serial[key] == parallel[key], key
        # every cell keeps its pruned model as a run folder that reloads to the evaluated numbers
        model, _, _ = load_pruned(tmp_path / "serial" / "models" / f"mlp__{method}__0.6__s0")
        assert sum(p.numel() for p in model.parameters()) == serial["params"]
    assert main(["bench", "--suite", str(tmp_path / "tiny.json"), "--out", str(tmp_path / "x"), "--workers", "0"]) == 2
    # --summarize-only rewrites the tables from finished cells, and refuses a folder with none
    (tmp_path / "serial" / "summary.md").unlink()
    assert (
        main(["bench", "--suite", str(tmp_path / "tiny.json"), "--out", str(tmp_path / "serial"), "--summarize-only"])
        == 0
    )
    assert "l1_uniform" in (tmp_path / "serial" / "summary.md").read_text()
    (tmp_path / "empty").mkdir()
    assert (
        main(["bench", "--suite", str(tmp_path / "tiny.json"), "--out", str(tmp_path / "empty"), "--summarize-only"])
        == 2
    )


def test_bench_skips_a_cell_another_runner_finished_meanwhile(tmp_path, monkeypatch):
    """Two runners on one folder: a cell that appears while this runner works is not run (nor overwritten)."""
    bench = robustprune.bench
    suite = bench.Suite(
        name="tiny", models={"mlp": "params"}, methods=["l1_uniform", "global_magnitude"], targets=[0.6],
        seeds=[0], search={}, eval={"latency": False},
    )  # fmt: skip
    out = tmp_path / "bench"
    first, second = suite.cells()
    calls = []

    def row(cell, by):
        return {
            "model": cell[0], "method": cell[1], "target": cell[2], "seed": cell[3], "by": by,
            "kept_macs": 0.5, "prune_seconds": 0.0, "suite_settings": bench.suite_settings(suite),
            "report": {"clean_accuracy": 0.9, "robust_accuracy": {"pgd": 0.5}},
        }  # fmt: skip

    def fake_run_cell(suite_, *cell, **kw):
        calls.append(cell)
        other = out / "cells" / f"{bench.cell_id(*second)}.json"
        other.write_text(json.dumps(row(second, "the other runner")))  # finished elsewhere meanwhile
        return row(cell, "this runner")

    monkeypatch.setattr(bench, "run_cell", fake_run_cell)
    monkeypatch.setattr(bench, "summarize_suite", lambda suite_, out_: [])
    lines = []
    bench.run_suite(suite, out, log=lines.append)
    assert calls == [first]
    assert json.loads((out / "cells" / f"{bench.cell_id(*second)}.json").read_text())["by"] == "the other runner"
    assert any("done meanwhile" in line for line in lines)


def test_runners_on_one_folder_split_its_cells(tmp_path, monkeypatch):
    """A cell another runner is working on (its claim held) is left to it, not run twice; once that runner
    is gone, a rerun takes the cell."""
    bench = robustprune.bench
    suite = bench.Suite(
        name="tiny", models={"mlp": "params"}, methods=["l1_uniform", "global_magnitude"], targets=[0.6],
        seeds=[0], search={}, eval={"latency": False},
    )  # fmt: skip
    out = tmp_path / "bench"
    (out / "cells").mkdir(parents=True)
    first, second = suite.cells()
    calls = []

    def fake_run_cell(suite_, *cell, **kw):
        calls.append(cell)
        return {
            "model": cell[0], "method": cell[1], "target": cell[2], "seed": cell[3], "kept_macs": 0.5,
            "prune_seconds": 0.0, "suite_settings": bench.suite_settings(suite),
            "report": {"clean_accuracy": 0.9, "robust_accuracy": {"pgd": 0.5}},
        }  # fmt: skip

    monkeypatch.setattr(bench, "run_cell", fake_run_cell)
    monkeypatch.setattr(bench, "summarize_suite", lambda suite_, out_: [])
    second_path = out / "cells" / f"{bench.cell_id(*second)}.json"
    lines = []
    with claim(bench._claim_path(second_path)) as held:  # the other runner, working on the second cell
        assert held
        bench.run_suite(suite, out, log=lines.append)
    assert calls == [first] and not second_path.exists()
    assert any("running in another runner" in line for line in lines)
    bench.run_suite(suite, out, log=lines.append)  # that runner died or stopped: the cell is free again
    assert calls == [first, second] and second_path.is_file()
    assert [p.name for p in (out / "cells").iterdir() if p.name.startswith(".")] == []  # no lock files left


@pytest.mark.skipif(not fashion_mnist_available(), reason="Fashion-MNIST not installed")
def test_a_test_run_evaluates_the_decision_runs_saved_models(tmp_path, monkeypatch):
    """--pruned-from: pruning is data-free, so the test split evaluates the validation run's very models."""
    bench = robustprune.bench
    small = {"n_attack": 50, "n_corruption": 20, "n_ood": 100, "latency": False}

    def suite(split, search):
        return bench.Suite(
            name=split, models={"mlp": "params"}, methods=["l1_uniform"], targets=[0.6], seeds=[0],
            search=search, eval={**small, "split": split}, paired={"split": split, "n_pgd": 20, "apgd": False},
        )  # fmt: skip

    val = tmp_path / "val"
    row = bench.run_cell(suite("val", {}), "mlp", "l1_uniform", 0.6, 0, models_dir=val / "models")
    (val / "cells").mkdir()
    (val / "cells" / "mlp__l1_uniform__0.6__s0.json").write_text(json.dumps(row))
    pruned_again = []
    real_baseline = bench.baseline_model
    monkeypatch.setattr(bench, "baseline_model", lambda *a, **k: pruned_again.append(1) or real_baseline(*a, **k))
    reused = bench.run_cell(suite("test", {}), "mlp", "l1_uniform", 0.6, 0, pruned_from=val)
    assert not pruned_again and reused["pruned_in"]["cell"].endswith("mlp__l1_uniform__0.6__s0.json")
    assert reused["report"]["params"] == row["report"]["params"] and reused["kept_params"] == row["kept_params"]
    assert reused["report"]["provenance"]["settings"]["split"] == "test" and "pruned_again" not in reused
    # other search settings: prune again, and say why
    other = bench.run_cell(suite("test", {"trials": 3}), "mlp", "l1_uniform", 0.6, 0, pruned_from=val)
    assert pruned_again == [1] and other["pruned_again"] == "other search settings" and "pruned_in" not in other
    # a model folder rewritten since (same shapes, other weights): its predictions give it away
    weights = val / "models" / "mlp__l1_uniform__0.6__s0" / "pruned.pt"
    state = torch.load(weights, weights_only=True)
    first = next(k for k, v in state.items() if v.dtype.is_floating_point and v.dim() == 2)
    state[first] = -state[first]
    torch.save(state, weights)
    mixed = bench.run_cell(suite("test", {}), "mlp", "l1_uniform", 0.6, 0, pruned_from=val)
    assert pruned_again == [1, 1] and "is not the weights file" in mixed["pruned_again"]  # spec.json tells
    spec_path = weights.parent / "spec.json"
    spec_data = json.loads(spec_path.read_text())
    spec_data["weights_sha256"] = file_sha256(weights)  # rewritten whole, as another run would
    spec_path.write_text(json.dumps(spec_data))
    again = bench.run_cell(suite("test", {}), "mlp", "l1_uniform", 0.6, 0, pruned_from=val)
    assert pruned_again == [1, 1, 1] and "predictions differ" in again["pruned_again"]
    assert again["reproduces_earlier"] is True and "reproduces_earlier" not in other  # pruned again: the same model
    # no saved model, and a row whose predictions the model pruned again does not make
    shutil.rmtree(val / "models")
    clean = row["per_image"]["clean"]
    row["per_image"]["clean"] = ("0" if clean[0] == "1" else "1") + clean[1:]  # one image's verdict flipped
    (val / "cells" / "mlp__l1_uniform__0.6__s0.json").write_text(json.dumps(row))
    changed = bench.run_cell(suite("test", {}), "mlp", "l1_uniform", 0.6, 0, pruned_from=val)
    assert changed["pruned_again"] == "no saved model" and changed["reproduces_earlier"] is False


@pytest.mark.skipif(not fashion_mnist_available(), reason="Fashion-MNIST not installed")
def test_missing_models_are_kept_only_where_they_reproduce_their_cell(tmp_path):
    bench = robustprune.bench
    suite = bench.Suite(
        name="val", models={"mlp": "params"}, methods=["l1_uniform", "global_magnitude"], targets=[0.6], seeds=[0],
        search={}, eval={"n_attack": 20, "n_corruption": 20, "n_ood": 100, "latency": False, "split": "val"},
        paired={"split": "val", "n_pgd": 20, "apgd": False},
    )  # fmt: skip
    (tmp_path / "cells").mkdir()
    row = bench.run_cell(suite, "mlp", "l1_uniform", 0.6, 0)  # run before models/ existed: no model kept
    (tmp_path / "cells" / "mlp__l1_uniform__0.6__s0.json").write_text(json.dumps(row))
    done = bench.save_missing_models(suite, tmp_path, log=lambda _: None)
    assert done == {"saved": ["mlp__l1_uniform__0.6__s0"], "differs": [], "skipped": ["mlp__global_magnitude__0.6__s0"]}
    kept, _, _ = load_pruned(tmp_path / "models" / "mlp__l1_uniform__0.6__s0")
    assert bench.reproduces_row(kept, robustprune.zoo.load("mlp")[1], row)
    # a row the model pruned again does not reproduce: nothing is kept
    shutil.rmtree(tmp_path / "models")
    clean = row["per_image"]["clean"]
    row["per_image"]["clean"] = ("0" if clean[0] == "1" else "1") + clean[1:]
    (tmp_path / "cells" / "mlp__l1_uniform__0.6__s0.json").write_text(json.dumps(row))
    done = bench.save_missing_models(suite, tmp_path, log=lambda _: None)
    assert done["differs"] == ["mlp__l1_uniform__0.6__s0"] and not (tmp_path / "models").exists()


@pytest.mark.skipif(not fashion_mnist_available(), reason="Fashion-MNIST not installed")
def test_host_repro_counts_the_predictions_a_cell_pruned_again_changes(tmp_path):
    from benchmarks.host_repro import compare_cell, saved_lines
    from robustprune.data.fashion_mnist import load_eval_split

    bench = robustprune.bench
    suite = bench.Suite(
        name="val", models={"mlp": "params"}, methods=["l1_uniform"], targets=[0.6], seeds=[0], search={},
        eval={"n_attack": 20, "n_corruption": 20, "n_ood": 100, "latency": False, "split": "val"},
        paired={"split": "val", "n_pgd": 20, "apgd": False},
    )  # fmt: skip
    row = bench.run_cell(suite, "mlp", "l1_uniform", 0.6, 0, models_dir=tmp_path / "models")
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "mlp__l1_uniform__0.6__s0.json").write_text(json.dumps(row))
    images = load_eval_split("val")
    same = compare_cell(suite, row, images)
    assert same["differ"] == 0 and same["now"] == same["then"]
    assert (
        "1 make their cell's clean predictions exactly, 0 only up to rounding ties, 0 differ"
        in saved_lines(tmp_path, images)[1]
    )
    clean = row["per_image"]["clean"]
    row["per_image"]["clean"] = "".join("0" if c == "1" else "1" for c in clean[:3]) + clean[3:]
    assert compare_cell(suite, row, images)["differ"] == 3
    (tmp_path / "cells" / "mlp__l1_uniform__0.6__s0.json").write_text(json.dumps(row))
    assert "0 only up to rounding ties, 1 differ: mlp__l1_uniform__0.6__s0" in saved_lines(tmp_path, images)[1]


def test_excluded_modules_keep_their_channels_and_the_run_folder_records_them(tmp_path):
    run = tmp_path / "run"
    argv = ["baseline", "--model", "zoo:cnn", "--method", "l1_uniform", "--target-macs", "0.6", "--exclude", "4"]
    assert main([*argv, "--no-eval", "--quiet", "--out", str(run)]) == 0
    model, _, data = load_pruned(run)
    original, _ = zoo.load("cnn")
    assert data["exclude"] == ["4"]
    assert model[4].out_channels == original[4].out_channels  # group '4' (conv 4 and its BN) stays whole
    assert model[0].out_channels < original[0].out_channels  # the others are pruned


def test_an_unpruned_models_report_is_reused_only_from_a_sibling_with_the_same_evaluation(tmp_path):
    from robustprune._provenance import provenance
    from robustprune.bench import _original_from_sibling

    suite = robustprune.bench.load_suite("quick")
    report = {"clean_accuracy": 0.9, "provenance": json.loads(json.dumps(provenance()))}
    cells = tmp_path / "other" / "cells"
    cells.mkdir(parents=True)

    def stored(eval_settings: dict, **made) -> None:
        row = {**report, "provenance": {**report["provenance"], **made}, "suite_settings": {"eval": eval_settings}}
        (cells / "mlp__original.json").write_text(json.dumps(row))

    stored(suite.eval)
    assert _original_from_sibling(suite, "mlp", tmp_path / "this") == report
    assert _original_from_sibling(suite, "cnn", tmp_path / "this") is None  # another model
    assert _original_from_sibling(suite, "mlp", tmp_path / "other") is None  # its own folder is not a sibling
    stored({**suite.eval, "seed": 1})
    assert _original_from_sibling(suite, "mlp", tmp_path / "this") is None  # evaluated otherwise
    stored(suite.eval, machine="another host")
    assert _original_from_sibling(suite, "mlp", tmp_path / "this") is None
    stored(suite.eval, commit="0" * 40)
    assert _original_from_sibling(suite, "mlp", tmp_path / "this") is None


def test_drawing_leaves_the_callers_matplotlib_backend_alone(search_run, tmp_path):
    script = f"""
import matplotlib
matplotlib.use("pdf")  # a notebook's or script's own backend
from torch import nn
from robustprune.plots import plot_run
from robustprune.recover import RecoverConfig
from robustprune.recover.result import RecoverResult
plot_run({str(search_run)!r}, {str(tmp_path / "plots")!r})
RecoverResult(nn.Linear(2, 2), [1.0, 0.5], {{}}, 1.0, RecoverConfig()).plot({str(tmp_path / "loss.png")!r})
print(matplotlib.get_backend())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pdf"
    assert (tmp_path / "loss.png").is_file() and (tmp_path / "plots" / "front.png").is_file()
