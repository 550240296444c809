"""The package's shape: the library names no repository folder, the core imports no comparison code."""

import ast
import re
import subprocess
from pathlib import Path

from robustprune._provenance import git_commit, outputs_excluded

PACKAGE = Path(__file__).resolve().parent.parent / "robustprune"


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_the_library_names_no_results_or_benchmarks_folder():
    offenders = []
    for path in _modules():
        rel = path.relative_to(PACKAGE).as_posix()
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(r"\bresults/|\bbenchmarks[/.]", line):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert offenders == []


def test_the_search_core_imports_no_baseline():
    for path in sorted((PACKAGE / "search").glob("*.py")):
        tree = ast.parse(path.read_text())
        names = [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
        names += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        assert not [n for n in names if n.startswith("robustprune.baselines")], path.name


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_output_folders_named_by_the_caller_do_not_make_the_code_dirty(tmp_path, monkeypatch):
    monkeypatch.delenv("ROBUSTPRUNE_OUTPUT_DIRS", raising=False)
    (tmp_path / "out").mkdir()
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "out" / "table.md").write_text("| a |\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert not git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "out" / "table.md").write_text("| b |\n")
    assert git_commit(tmp_path).endswith("-dirty")  # the library knows no output folder by itself
    assert not git_commit(tmp_path, outputs=[tmp_path / "out"]).endswith("-dirty")
    with outputs_excluded(tmp_path / "out"):  # what a benchmark or the bench runner sets for its workers
        assert not git_commit(tmp_path).endswith("-dirty")
    assert git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path, outputs=[tmp_path / "out"]).endswith("-dirty")
