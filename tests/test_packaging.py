"""Packaging: what `pip install robustprune` gives a user who has no clone of the repository."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "robustprune"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _core_dependencies() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_canonical(re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0]) for dep in project["dependencies"]}


def _extra_dependencies() -> set[str]:
    """Packages of the optional extras a user opts into (dev excluded: it is for working on robustprune)."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return {
        _canonical(re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0])
        for name, deps in extras.items()
        if name != "dev"
        for dep in deps
    }


def _guarded_imports(tree: ast.AST) -> set[ast.AST]:
    """Import nodes inside a ``try`` that catches ImportError: a missing extra becomes a one-line error there."""
    guarded: set[ast.AST] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        catches = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
        if catches & {"ImportError", "ModuleNotFoundError"}:
            guarded.update(
                n for stmt in node.body for n in ast.walk(stmt) if isinstance(n, ast.Import | ast.ImportFrom)
            )
    return guarded


def _third_party_imports(include_guarded: bool = True) -> dict[str, str]:
    """Top-level third-party module -> first file importing it, lazy imports inside functions included."""
    found: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        skip = set() if include_guarded else _guarded_imports(tree)
        for node in ast.walk(tree):
            if node in skip:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "robustprune" and top not in sys.stdlib_module_names:
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_a_core_dependency():
    # a module the code imports but only an extra installs breaks `pip install robustprune && robustprune demo`;
    # an extra's package may be imported only where a missing install is caught (one line naming the extra)
    core = _core_dependencies()
    extras = _extra_dependencies()
    distributions = importlib.metadata.packages_distributions()
    missing, unguarded = [], []
    guarded_ok = _third_party_imports(include_guarded=False)
    for module, where in _third_party_imports().items():
        dists = {_canonical(d) for d in distributions.get(module, [module])}
        if dists & core:
            continue
        if dists & extras and module not in guarded_ok:
            continue
        (unguarded if dists & extras else missing).append(f"{module} ({guarded_ok.get(module, where)})")
    assert not missing, f"imported but not in [project] dependencies: {missing}"
    assert not unguarded, f"optional-extra packages imported outside a try/except ImportError: {unguarded}"


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _setuptools_builds_wheels() -> bool:
    """Whether this environment's setuptools builds wheels itself (>= 70.1, no `wheel` package needed)."""
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return False
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2]) >= (70, 1)


def _build_wheel(tmp_path: Path) -> Path:
    """Build the wheel from a copy of the sources, so the build leaves nothing in the checkout."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(PACKAGE, src / "robustprune", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # a fresh Python 3.11 venv has setuptools 65, which needs the isolated build (pyproject: setuptools>=68)
    isolation = ["--no-build-isolation"] if _setuptools_builds_wheels() else []
    subprocess.run([*pip, "wheel", "--no-deps", *isolation, "-w", str(dist), str(src)], check=True)
    (wheel,) = dist.glob("robustprune-*.whl")
    return wheel


def _venv_with_wheel(tmp_path: Path, wheel: Path) -> Path:
    """A fresh venv holding the wheel; the running environment's site-packages supply torch & co."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = _venv_python(venv)
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # plain path lines (no .pth processing there), after the venv's own site-packages: the wheel wins
    parents = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and Path(p).is_dir()]
    Path(purelib, "zz_parent_env.pth").write_text("\n".join(parents) + "\n")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "--python", str(python)]
    subprocess.run([*pip, "install", "--no-deps", "--no-index", str(wheel)], check=True)
    return venv


_CHECK = """
import json, sys
import robustprune, robustprune.bench as bench
for name in sys.argv[1:]:
    bench.load_suite(name)
print(json.dumps({"file": robustprune.__file__, "suites": bench.suite_names()}))
"""


def test_installed_wheel_loads_every_packaged_suite(tmp_path):
    expected = sorted(p.stem for p in (PACKAGE / "suites").glob("*.json"))
    assert expected, "the checkout has no packaged suites"
    venv = _venv_with_wheel(tmp_path, _build_wheel(tmp_path))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH")}
    run_dir = tmp_path / "elsewhere"  # not the checkout: `import robustprune` must find the installed wheel
    run_dir.mkdir()
    command = [str(_venv_python(venv)), "-c", _CHECK, *expected]
    out = subprocess.run(command, cwd=run_dir, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(result["file"]).resolve().is_relative_to(venv.resolve()), result["file"]
    assert result["suites"] == expected
    # the console script is installed and runs from the wheel
    script = venv / ("Scripts/robustprune.exe" if os.name == "nt" else "bin/robustprune")
    help_out = subprocess.run([str(script), "bench", "--help"], cwd=run_dir, env=env, capture_output=True, text=True)
    assert help_out.returncode == 0 and "--suite" in help_out.stdout, help_out.stderr


def test_load_suite_by_name_and_by_path_agree(tmp_path):
    from robustprune.bench import SUITE_DIR, load_suite

    copy = tmp_path / "quick.json"
    copy.write_text((SUITE_DIR / "quick.json").read_text())
    assert load_suite("quick") == load_suite(str(copy))


def test_suite_names_lists_the_packaged_suites():
    from robustprune.bench import suite_names

    assert suite_names() == sorted(p.stem for p in (PACKAGE / "suites").glob("*.json"))


def _ci(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(root / ".ci" / "run"), *args], capture_output=True, text=True, env={**os.environ, **env}
    )


def _fake_checkout(tmp_path: Path, *lines: str) -> Path:
    """A folder holding .ci/run and a README whose first bash block holds ``lines``."""
    (tmp_path / ".ci").mkdir()
    shutil.copy2(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    block = "\n".join(["```bash", "# a comment", *lines, "```"])
    (tmp_path / "README.md").write_text(f"# x\n\n{block}\n\n```bash\nnot a ci command\n```\n")
    return tmp_path


def test_ci_runs_the_readme_quick_start_commands():
    out = _ci(ROOT, "--print")
    assert out.returncode == 0, out.stderr
    install, tests = out.stdout.splitlines()
    # the first command installs the core package only (no extras) and runs the demo
    assert "pip install -e . " in install and "[" not in install and install.endswith("robustprune demo")
    assert "pytest" in tests


def test_ci_refuses_a_readme_block_without_exactly_two_commands(tmp_path):
    root = _fake_checkout(tmp_path, "echo one", "echo two", "echo three")
    out = _ci(root, "--print")
    assert out.returncode == 1 and "found 3" in out.stderr


def test_ci_runs_the_commands_in_a_fresh_venv_and_fails_on_their_exit_code(tmp_path):
    root = _fake_checkout(tmp_path, 'python -c "import sys; print(sys.prefix)" > prefix.txt', "exit 5")
    out = _ci(root, PYTHON=sys.executable)
    assert out.returncode == 5, out.stderr  # e.g. pytest's "no tests ran" must fail CI
    prefix = Path((root / "prefix.txt").read_text().strip())
    assert prefix.name == "venv" and prefix != Path(sys.base_prefix) and not prefix.exists(), prefix
