"""Result files are written whole under a temporary name of their own, even when two runs write one folder."""

import os
import subprocess
import sys

import matplotlib.pyplot as plt
import pytest

from robustprune import _io, plots
from robustprune._io import claim, remove_stale_staging, staged_file


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


def test_a_killed_writers_temporary_is_removed_and_a_live_ones_kept(tmp_path):
    staging = staged_file(tmp_path / "report.json")
    live = staging.__enter__()  # this process is still writing it
    live.write_text("half")
    assert remove_stale_staging(tmp_path) == [] and live.exists()
    dead = live.with_name(live.name.replace(f".tmp-{os.getpid()}-", ".tmp-999999999-"))  # its writer was killed
    live.rename(dead)
    older = tmp_path / ".report.json.x1y2.tmp"  # an older writer's name, without a pid
    older.write_text("half")
    assert sorted(remove_stale_staging(tmp_path)) == sorted([dead, older]) and list(tmp_path.iterdir()) == []


def test_a_staged_file_takes_the_umask_or_the_mode_asked(tmp_path):
    umask = os.umask(0o022)
    try:
        with staged_file(tmp_path / "report.json") as tmp:
            tmp.write_text("{}")
        with staged_file(tmp_path / "private.pt", mode=0o600) as tmp:
            tmp.write_text("x")
    finally:
        os.umask(umask)
    assert (tmp_path / "private.pt").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o666 & ~_io._UMASK


def test_a_claim_is_exclusive_and_freed_when_its_holder_dies(tmp_path):
    lock = tmp_path / ".cell.running"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from robustprune._io import claim\nwith claim({str(lock)!r}) as mine:\n"
         "    print(mine, flush=True)\n    input()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "True"
        with claim(lock) as mine:
            assert not mine  # another live process holds it
        assert lock.exists()  # the loser leaves the holder's file alone
        holder.kill()  # SIGKILL: no clean-up ran, yet the system dropped its lock
        holder.wait()
        with claim(lock) as mine:
            assert mine and lock.read_text() == f"{os.getpid()}\n"
            with claim(lock) as again:
                assert not again  # one holder at a time, even within one process
        assert not lock.exists()  # the holder removes it when done
    finally:
        holder.kill()
