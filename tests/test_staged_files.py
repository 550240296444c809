"""Result files are written whole under a temporary name of their own, even when two runs write one folder."""

import matplotlib.pyplot as plt
import pytest

from robustprune import plots
from robustprune._io import remove_stale_staging, staged_file


def test_concurrent_saves_of_one_figure_do_not_collide(tmp_path, monkeypatch):
    # the second save starts while the first is between writing its temporary file and renaming it
    real_savefig = plt.Figure.savefig
    nested = []

    def savefig_then_interleave(fig, name, *args, **kwargs):
        real_savefig(fig, name, *args, **kwargs)
        if not nested:
            nested.append(True)
            plots._save(plt.figure(), tmp_path / "fig")

    monkeypatch.setattr(plt.Figure, "savefig", savefig_then_interleave)
    written = plots._save(plt.figure(), tmp_path / "fig")
    assert [p.name for p in written] == ["fig.png", "fig.svg"]
    assert all(p.stat().st_size > 0 for p in written)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png", "fig.svg"]  # no temporary file left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), staged_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_killed_writers_temporary_is_removed_by_the_next_run(tmp_path):
    staging = staged_file(tmp_path / "report.json")
    tmp = staging.__enter__()  # the process dies here: neither renamed nor removed
    tmp.write_text("half")
    assert remove_stale_staging(tmp_path) == [tmp] and not tmp.exists()
