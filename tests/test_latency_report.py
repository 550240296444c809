"""benchmarks.latency --report-only rebuilds the whole file: rows, the cells' commits, notes and profile."""

import json

from benchmarks import latency


def _cell(commit: str, load: float) -> dict:
    timing = {"median_ms": 2.0, "iqr_ms": 0.1, "runs": 50}
    return {
        "model": "cnn",
        "target": 0.5,
        "method": "search",
        "round_to": 1,
        "batch": 1,
        "threads": 1,
        "backend": "eager",
        "original_ms": timing,
        "pruned_ms": {"median_ms": 1.0, "iqr_ms": 0.1, "runs": 50},
        "kept_macs": 0.5,
        "speedup": 2.0,
        "speedup_per_mac_reduction": 1.0,
        "provenance": {"commit": commit, "machine": "m", "torch": "t", "load_average": load, "command": "cmd"},
    }


def test_report_only_keeps_notes_profile_and_sources(tmp_path):
    cells = tmp_path / "latency" / "cells"
    cells.mkdir(parents=True)
    for backend, commit, load in (("eager", "a" * 40, 1.5), ("onnx", "b" * 40, 3.0)):
        cell = _cell(commit, load) | {"backend": backend}
        path = latency._cell_path(cells, "cnn", 0.5, 1, 1, 1, backend, "search")
        path.write_text(json.dumps(cell))
    (tmp_path / "latency" / "notes.md").write_text("hand-written caveat")
    (tmp_path / "latency" / "profile.md").write_text("profile table")
    out = tmp_path / "latency.md"
    latency.main(
        ["--report-only", "--models", "cnn", "--targets", "0.5", "--batches", "1", "--threads", "1"]
        + ["--backends", "eager", "onnx", "--out", str(out)]
    )
    text = out.read_text()
    assert text.count("| cnn | 0.5 | search |") == 2
    assert "- `aaaaaaa` by `cmd`: 1 cells" in text and "load average 3.00-3.00" in text
    assert text.index("## Notes") < text.index("hand-written caveat") < text.index("## Where the time goes")
    assert text.rstrip().endswith("profile table")
    assert "No cell yet" not in text and "50 rounds per cell" in text
    assert "at the start" not in text.splitlines()[2]  # the report run's load is not the cells'


def _run_folder(root, name: str, weights: bytes):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text("{}")
    (folder / "pruned.pt").write_bytes(weights)
    return folder


def test_a_saved_cell_is_timed_again_only_when_its_pruned_model_changed(tmp_path, monkeypatch):
    cells = tmp_path / "latency" / "cells"
    cells.mkdir(parents=True)
    models = tmp_path / "models"
    folder = _run_folder(models, "cnn__search__0.5__s0", b"weights now")
    for backend, weights in (("eager", latency._weights_digest(folder)), ("onnx", "0" * 12)):
        cell = _cell("a" * 40, 0.1) | {"backend": backend, "weights": weights}
        latency._cell_path(cells, "cnn", 0.5, 1, 1, 1, backend, "search").write_text(json.dumps(cell))
    timed = []

    def measure(args, m, t, r, b, n, backend, workdir):
        timed.append(backend)
        return _cell("c" * 40, 0.1) | {"backend": backend, "weights": latency._weights_digest(folder)}

    monkeypatch.setattr(latency, "_measure_cell", measure)
    argv = ["--models", "cnn", "--targets", "0.5", "--batches", "1", "--threads", "1", "--backends", "eager", "onnx"]
    latency.main([*argv, "--models-dir", str(models), "--out", str(tmp_path / "latency.md")])
    assert timed == ["onnx"]  # the eager cell timed this very model; the onnx cell another one
    saved = json.loads(latency._cell_path(cells, "cnn", 0.5, 1, 1, 1, "onnx", "search").read_text())
    assert saved["weights"] == latency._weights_digest(folder)


def test_cells_of_another_seed_are_kept_apart():
    a = latency._cell_path(latency.Path("c"), "cnn", 0.5, 1, 1, 1, "eager", "search", seed=0)
    b = latency._cell_path(latency.Path("c"), "cnn", 0.5, 1, 1, 1, "eager", "search", seed=1)
    assert a != b and a.name == "cnn__0.5__r1__b1__t1__eager__search.json"


def test_a_failed_cell_is_tried_again_once_its_model_changes(tmp_path, monkeypatch):
    cells = tmp_path / "latency" / "cells"
    cells.mkdir(parents=True)
    models = tmp_path / "models"
    folder = _run_folder(models, "cnn__search__0.5__s0", b"first weights")
    calls = []

    def fail(args, m, t, r, b, n, backend, workdir):
        calls.append(backend)
        raise RuntimeError("inductor bug")

    monkeypatch.setattr(latency, "_measure_cell", fail)
    argv = ["--models", "cnn", "--targets", "0.5", "--batches", "1", "--threads", "1", "--backends", "eager"]
    argv += ["--models-dir", str(models), "--out", str(tmp_path / "latency.md")]
    latency.main(argv)
    latency.main(argv)  # the same model: the failure is the result, not retried
    assert calls == ["eager"]
    (folder / "pruned.pt").write_bytes(b"second weights")
    latency.main(argv)
    assert calls == ["eager", "eager"]


def test_a_report_of_some_cells_leaves_out_the_notes_on_all_of_them(tmp_path):
    cells = tmp_path / "latency" / "cells"
    cells.mkdir(parents=True)
    for backend in ("eager", "onnx"):
        path = latency._cell_path(cells, "cnn", 0.5, 1, 1, 1, backend, "search")
        path.write_text(json.dumps(_cell("a" * 40, 1.0) | {"backend": backend}))
    (tmp_path / "latency" / "notes.md").write_text("hand-written caveat on both cells")
    out = tmp_path / "latency.md"
    latency.main(
        ["--report-only", "--models", "cnn", "--targets", "0.5", "--batches", "1", "--threads", "1"]
        + ["--backends", "eager", "--out", str(out)]
    )
    text = out.read_text()
    assert "hand-written caveat" not in text and "holds 1 of the 2 saved cells" in text
