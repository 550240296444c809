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
