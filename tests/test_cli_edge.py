"""The CLI edge: one search config for CLI, library, demo and bench; exit codes; checks before the
expensive work; run folders that keep the user's files; Ctrl-C."""

import dataclasses
import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import robustprune as rp
from robustprune import zoo
from robustprune._io import RUN_FILES, remove_stale_staging, sigint_deferred, staged_directory
from robustprune.bench import load_suite
from robustprune.cli import build_parser, main, search_config_from_args
from robustprune.probes.probeset import ProbeConfig
from robustprune.search import SearchConfig, engine, progressive
from robustprune.search.engine import SEARCH_PROBES, search_config

REPO = Path(__file__).resolve().parent.parent
FAST_BASELINE = ["--model", "zoo:mlp", "--method", "l1_uniform", "--target-params", "0.6", "--no-eval", "--quiet"]
TINY_SEARCH = ["--trials", "1", "--steps", "1", "--n-probes", "16", "--probe-steps", "2", "--quiet"]


class SynthesisStarted(Exception):
    """Raised by a patched build_probes: the expensive work began."""


@pytest.fixture
def no_synthesis(monkeypatch):
    """Fail the test's command the moment the search would start synthesizing probes."""

    def refuse(*_args, **_kwargs):
        raise SynthesisStarted("the search started before the inputs were checked")

    monkeypatch.setattr(progressive, "build_probes", refuse)


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# --- 1. one search config -------------------------------------------------------------------------


def test_cli_and_library_build_equal_search_configs():
    args = build_parser().parse_args(
        ["search", "--model", "zoo:mlp", "--target-macs", "0.5", "--seed", "1"] + ["--out", "x"]
    )
    from_cli = search_config_from_args(args)
    assert from_cli == search_config(target_macs=0.5, seed=1) == SearchConfig(target_macs=0.5, seed=1)
    assert from_cli.probe_config == SEARCH_PROBES.seeded(1)
    assert from_cli.probe_config.eps == SEARCH_PROBES.eps and from_cli.probe_config.synthetic.seed == 1
    # an explicit probe seed wins over the search seed, the same way in both
    args = build_parser().parse_args(
        ["search", "--model", "zoo:mlp", "--target-macs", "0.5", "--seed", "1", "--probe-seed", "7", "--out", "x"]
    )
    explicit = SearchConfig(target_macs=0.5, seed=1, probes=dataclasses.replace(SEARCH_PROBES, seed=7))
    assert search_config_from_args(args) == explicit
    assert explicit.probe_config.seed == explicit.probe_config.synthetic.seed == 7


def test_cli_and_rp_search_probe_with_the_same_config(monkeypatch, tmp_path):
    """What build_probes receives, through the CLI and through rp.search: equal, eps and seed included."""
    seen = []

    def record(_model, _spec, _layer, config, **_kw):
        seen.append(config)
        raise SynthesisStarted("recorded")

    monkeypatch.setattr(progressive, "build_probes", record)
    model, spec = zoo.load("mlp")
    with pytest.raises(SynthesisStarted):
        rp.search(model, spec, target_params=0.5, seed=1)
    argv = ["search", "--model", "zoo:mlp", "--target-params", "0.5", "--seed", "1", "--out", str(tmp_path / "r")]
    assert main([*argv, "--quiet"]) == 1  # the recorder's exception: not a user error
    assert seen[0] == seen[1]
    assert seen[0].eps == SEARCH_PROBES.eps and seen[0].seed == seen[0].synthetic.seed == 1


def test_demo_and_bench_use_the_same_rule():
    parser = build_parser()
    demo = parser.parse_args(["demo", "--target-macs", "0.5", "--trials", "3", "--seed", "2"])
    cli = parser.parse_args(
        ["search", "--model", "zoo:mlp", "--target-macs", "0.5", "--trials", "3", "--seed", "2", "--out", "x"]
    )
    assert SearchConfig(target_macs=demo.target_macs, trials=demo.trials, seed=demo.seed) == search_config_from_args(
        cli
    )
    quick = load_suite("quick").search_config("params", 0.5, 2).probe_config
    assert quick.eps == SEARCH_PROBES.eps  # the suite gives no eps: the search's, not ProbeConfig's own default
    assert quick.seed == quick.synthetic.seed == 2  # the published cells: probe seed == seed
    assert quick.synthetic.n == 128 and quick.attack_steps == 5


def test_probe_seed_follows_the_search_seed_unless_given():
    assert dataclasses.replace(SearchConfig(target_macs=0.5), seed=4).probe_config.seed == 4
    fixed = SearchConfig(target_macs=0.5, seed=2, probes=ProbeConfig(seed=5))
    assert fixed.probe_config.seed == fixed.probe_config.synthetic.seed == 5
    assert fixed.to_dict()["probes"]["seed"] == 5
    assert SearchConfig(target_macs=0.5, seed=3).to_dict()["probes"]["synthetic"]["seed"] == 3


# --- 2. errors and exit codes ----------------------------------------------------------------------


@pytest.mark.parametrize("error", [ValueError("boom"), KeyError("boom"), FileNotFoundError("boom")])
def test_internal_errors_exit_1_with_one_line(error, monkeypatch, capsys):
    def broken(_args):
        raise error

    monkeypatch.setattr("robustprune.cli.zoo.run", broken)
    assert main(["zoo"]) == 1
    line = one_line(capsys)
    assert "internal error" in line and "boom" in line and "--debug" in line
    assert main(["--debug", "zoo"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "internal error" in err
    assert main(["zoo", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_split_probes_with_one_probe_fails_before_the_search(tmp_path, capsys, no_synthesis):
    argv = ["search", "--model", "zoo:mlp", "--target-params", "0.5", "--n-probes", "1", "--split-probes"]
    assert main([*argv, "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "split_probes needs at least 2 synthetic probes, got 1" in one_line(capsys)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("url", ["nope://x", "sqlite:////no/such/folder/search.db", "not a url"])
def test_bad_storage_fails_before_the_search(url, tmp_path, capsys, no_synthesis):
    argv = ["search", "--model", "zoo:mlp", "--target-params", "0.5", "--storage", url, "--out", str(tmp_path / "r")]
    assert main([*argv, "--quiet"]) == 2
    assert "--storage" in one_line(capsys)
    assert not (tmp_path / "r").exists()


@pytest.fixture
def corrupt_data(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        (root / f"{name}.gz").write_bytes(b"this is not gzip")
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big")))
    return root


def test_corrupt_data_fails_before_the_search(corrupt_data, tmp_path, capsys, no_synthesis):
    argv = ["search", "--model", "zoo:mlp", "--target-params", "0.5", "--data-root", str(corrupt_data)]
    assert main([*argv, "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "gzip" in one_line(capsys)
    assert main(["eval", "--model", "zoo:mlp", "--data-root", str(corrupt_data), "--quiet"]) == 2
    assert "gzip" in one_line(capsys)


# --- 3. option checks -------------------------------------------------------------------------------


def test_zero_steps_is_rejected(tmp_path, capsys):
    with pytest.raises(ValueError, match="steps"):
        SearchConfig(target_macs=0.5, steps=0)
    with pytest.raises(SystemExit) as exc:
        main(["search", "--model", "zoo:mlp", "--target-params", "0.5", "--steps", "0", "--out", str(tmp_path / "r")])
    assert exc.value.code == 2
    assert "--steps" in one_line(capsys)


@pytest.mark.parametrize("floor", ["fidelity=2", "robust_fidelity=-0.1", "kl=-1", "open_world=1.5", "fidelity=nan"])
def test_floors_outside_the_proxy_range_are_rejected(floor, tmp_path, capsys, no_synthesis):
    name, value = floor.split("=")
    with pytest.raises(ValueError, match=name):
        SearchConfig(target_macs=0.5, floors={name: float(value)})
    argv = ["search", "--model", "zoo:mlp", "--target-params", "0.5", "--floor", floor]
    assert main([*argv, "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "floor" in one_line(capsys)
    assert not (tmp_path / "r").exists()


def test_an_unknown_floor_is_named_as_a_floor(tmp_path, capsys, no_synthesis):
    argv = ["search", "--model", "zoo:mlp", "--target-params", "0.5", "--floor", "bogus=1"]
    assert main([*argv, "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "unknown proxies in floors: bogus" in one_line(capsys)


def test_floors_inside_the_range_are_kept():
    assert SearchConfig(target_macs=0.5, floors={"fidelity": 0.9, "open_world": 0.2}).floors["fidelity"] == 0.9


# --- 4. late failures -------------------------------------------------------------------------------


@pytest.mark.parametrize("out", ["/proc/robustprune-test", "/sys/robustprune-test"])
def test_unwritable_out_fails_before_the_work(out, capsys, no_synthesis):
    if not Path(out).parent.is_dir():
        pytest.skip(f"no {Path(out).parent} here")
    assert main(["search", "--model", "zoo:mlp", "--target-params", "0.5", "--out", out, "--quiet"]) == 2
    assert "not writable" in one_line(capsys)


def test_a_failed_evaluation_keeps_the_pruned_model(tmp_path, monkeypatch, capsys):
    def broken(*_args, **_kwargs):
        raise RuntimeError("evaluation broke")

    monkeypatch.setattr("robustprune.cli._output.report_for_run", broken)
    search_out, baseline_out = tmp_path / "search", tmp_path / "baseline"
    argv = ["search", "--model", "zoo:mlp", "--target-params", "0.8", *TINY_SEARCH, "--out", str(search_out)]
    assert main(argv) == 1
    line = one_line(capsys)
    assert "evaluation broke" in line and f"saved in {search_out}" in line
    assert {"pruned.pt", "spec.json", "history.json", "front.json", "plots"} <= {p.name for p in search_out.iterdir()}
    assert not (search_out / "report.json").exists()
    rp.load_pruned(search_out)  # the saved model loads
    assert main(["baseline", *FAST_BASELINE, "--out", str(baseline_out)]) == 1
    assert "evaluation broke" in one_line(capsys)
    assert {p.name for p in baseline_out.iterdir()} == {"pruned.pt", "spec.json"}


# --- 5. overwrites ----------------------------------------------------------------------------------


#: What makes spec.json robustprune's (``_io.is_run_spec``); the rest of a real one does not matter here.
RUN_SPEC = {"format_version": 1, "robustprune": "0", "groups": {}}


def fake_search_run(folder: Path) -> None:
    """A search run folder as robustprune writes it, plus the user's own files."""
    for name in RUN_FILES["search"]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("old run")
    (folder / "spec.json").write_text(json.dumps(RUN_SPEC))  # a run is recognized by its spec.json
    (folder / "notes.txt").write_text("mine")
    (folder / "plots" / "mine.png").write_text("mine")


def test_a_folder_with_other_files_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["baseline", *FAST_BASELINE, "--out", str(out)]) == 2
    assert "--overwrite" in one_line(capsys)
    assert {p.name for p in out.iterdir()} == {"notes.txt"}
    assert main(["baseline", *FAST_BASELINE, "--out", str(out), "--overwrite"]) == 0
    assert {p.name for p in out.iterdir()} == {"notes.txt", "pruned.pt", "spec.json", "report.json"}
    assert (out / "notes.txt").read_text() == "mine"


def test_overwrite_replaces_only_robustprunes_files_and_leaves_no_stale_ones(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    fake_search_run(out)
    assert main(["baseline", *FAST_BASELINE, "--out", str(out)]) == 2  # user files, and a search run
    one_line(capsys)
    assert (out / "history.json").read_text() == "old run"
    assert main(["baseline", *FAST_BASELINE, "--out", str(out), "--overwrite"]) == 0
    names = {p.relative_to(out).as_posix() for p in out.rglob("*")}
    assert names == {"notes.txt", "plots", "plots/mine.png", "pruned.pt", "spec.json", "report.json"}
    assert (out / "plots" / "mine.png").read_text() == "mine"
    assert json.loads((out / "spec.json").read_text()) != RUN_SPEC
    rp.load_pruned(out)


def test_another_kind_of_run_needs_overwrite_and_a_rerun_of_the_same_kind_does_not(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["baseline", *FAST_BASELINE, "--out", str(out)]) == 0
    assert main(["baseline", *FAST_BASELINE, "--out", str(out)]) == 0  # the same kind: rerun in place
    (out / "history.json").write_text("{}")  # now it looks like a search run
    assert main(["baseline", *FAST_BASELINE, "--out", str(out)]) == 2
    assert "search run" in one_line(capsys)


def test_commit_keeps_user_files_in_subfolders_and_removes_stale_owned_ones(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    fake_search_run(out)
    with staged_directory(out, owned=RUN_FILES["search"]) as staging:
        (staging / "pruned.pt").write_text("new")
        (staging / "plots").mkdir()
        (staging / "plots" / "front.png").write_text("new")
    assert (out / "pruned.pt").read_text() == (out / "plots" / "front.png").read_text() == "new"
    assert (out / "plots" / "mine.png").read_text() == (out / "notes.txt").read_text() == "mine"
    assert not (out / "history.json").exists() and not (out / "plots" / "steps.svg").exists()


# --- 6. interrupts ----------------------------------------------------------------------------------


def test_a_rerun_removes_stale_staging_folders(tmp_path):
    out = tmp_path / "run"
    assert main(["baseline", *FAST_BASELINE, "--out", str(out)]) == 0
    dead = out / ".partial-999999999-abc"  # what kill -9 during the write leaves (no such pid)
    dead.mkdir()
    (dead / "pruned.pt").write_text("half")
    (out / ".report.json.x1y2.tmp").write_text("half")
    assert main(["baseline", *FAST_BASELINE, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["pruned.pt", "report.json", "spec.json"]
    assert remove_stale_staging(out) == []


def test_a_users_folder_that_only_looks_like_staging_is_kept(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["baseline", *FAST_BASELINE, "--out", str(out)]) == 0
    mine = out / ".partial-notes"  # robustprune's staging names carry a pid; this one is the user's
    mine.mkdir()
    (mine / "draft.txt").write_text("mine")
    assert remove_stale_staging(out) == []
    assert main(["baseline", *FAST_BASELINE, "--out", str(out)]) == 2  # the user's file is foreign
    assert ".partial-notes/draft.txt" in one_line(capsys)
    assert main(["baseline", *FAST_BASELINE, "--out", str(out), "--overwrite"]) == 0
    assert (mine / "draft.txt").read_text() == "mine"


def test_a_live_process_staging_folder_is_not_removed(tmp_path):
    live = tmp_path / f".partial-{os.getpid()}-abc"
    live.mkdir()
    assert remove_stale_staging(tmp_path) == [] and live.is_dir()


def test_sigint_is_held_back_until_the_commit_is_done():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with sigint_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("after the signal")
    assert done == ["after the signal"]


# A CLI run whose baseline step (or whose run-folder write) waits for a signal: it prints READY
# once the heavy imports are done, so the test interrupts exactly there.
_INTERRUPTED = textwrap.dedent(
    """
    import sys, time
    import robustprune.baselines as baselines
    from robustprune.cli import main

    where = sys.argv[1]
    original_baseline, original_save = baselines.baseline, baselines.PruneResult.save

    def wait():
        print("READY", flush=True)
        time.sleep(120)

    def build_parser():
        wait()  # where the command line imports torch and the search modules

    if where == "imports":
        import robustprune.cli as cli

        cli.build_parser = build_parser

    def baseline(*args, **kwargs):
        if where == "work":
            wait()
        return original_baseline(*args, **kwargs)

    def save(self, directory, **kwargs):
        original_save(self, directory, **kwargs)
        wait()  # inside the staging folder, half of the run written

    baselines.baseline, baselines.PruneResult.save = baseline, save
    sys.exit(main(sys.argv[2:]))
    """
)


def interrupt(where: str, out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    argv = [sys.executable, "-c", _INTERRUPTED, where, "baseline", *FAST_BASELINE, "--out", str(out)]

    # SIGINT as a terminal delivers it: a shell's background job (CI run with &) inherits it ignored
    def default_sigint():
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
    )
    try:
        assert proc.stdout.readline().strip() == "READY", proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def test_sigint_during_the_work_is_one_line_exit_130(tmp_path):
    out = tmp_path / "run"
    result = interrupt("work", out)
    assert result.returncode == 130
    assert result.stderr.strip().splitlines() == ["robustprune baseline: interrupted"], result.stderr
    assert not out.exists()


def test_sigint_during_the_write_leaves_the_old_run_or_nothing(tmp_path):
    new = tmp_path / "new"
    result = interrupt("write", new)
    assert result.returncode == 130 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not new.exists()  # no empty folder
    old = tmp_path / "old"
    assert main(["baseline", *FAST_BASELINE, "--out", str(old)]) == 0
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    result = interrupt("write", old)
    assert result.returncode == 130, result.stderr
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before  # the old run, whole


def test_report_json_of_a_run_is_valid(tmp_path):
    out = tmp_path / "run"
    assert main(["baseline", *FAST_BASELINE, "--out", str(out)]) == 0
    assert json.loads((out / "report.json").read_text())["provenance"]["method"] == "l1_uniform"


def test_sigint_while_the_modules_load_is_one_line_exit_130(tmp_path):
    result = interrupt("imports", tmp_path / "run")
    assert result.returncode == 130
    assert result.stderr.strip().splitlines() == ["robustprune: interrupted"], result.stderr


def test_the_command_line_module_loads_without_torch():
    """So that a Ctrl-C during the slow imports happens inside main, which reports it in one line."""
    code = "import sys, robustprune.cli"
    out = subprocess.run(
        [sys.executable, "-c", f"{code}; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert out.stdout.strip() == "False", out.stderr


def test_the_lazy_package_keeps_its_public_names():
    import robustprune
    from robustprune.search import engine as search_engine

    assert robustprune.search is search_engine.search  # the function, not the subpackage
    assert robustprune.SearchConfig is SearchConfig and callable(robustprune.load_pruned)
    assert "search" in dir(robustprune)
    with pytest.raises(AttributeError):
        robustprune.no_such_name  # noqa: B018


def test_sigint_inside_a_trial_prints_no_optuna_traceback(tmp_path, monkeypatch, capfd):
    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.Evaluator, "evaluate", interrupted)
    argv = ["search", "--model", "zoo:mlp", "--target-params", "0.8", *TINY_SEARCH, "--out", str(tmp_path / "r")]
    assert main(argv) == 130
    err = capfd.readouterr().err.strip().splitlines()
    assert err == ["robustprune search: interrupted"], err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "l1_uniform", "--target-params", "0.0001"], "cannot be reached"),
        (["--method", "paoding", "--target-params", "0.5", "--target-macs", "0.5"], "one target"),
    ],
)
def test_user_errors_from_the_library_stay_exit_2(argv, message, tmp_path, capsys):
    """Now that a bare ValueError means a bug (exit 1), the user's mistakes keep their own classes."""
    assert main(["baseline", "--model", "zoo:mlp", *argv, "--no-eval", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert message in one_line(capsys)
    assert not (tmp_path / "r").exists()


def test_a_suite_naming_a_user_model_says_suites_take_the_zoo(tmp_path):
    suite = json.loads((REPO / "robustprune" / "suites" / "quick.json").read_text())
    suite["models"] = {"mypkg.nets:bn": "macs"}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(suite))
    with pytest.raises(ValueError, match="is not a zoo model .*search / baseline --data"):
        load_suite(str(path))
