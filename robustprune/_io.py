"""Crash-safe file output: write to a temporary name in the same folder, then rename; run folders
that robustprune fills are checked before the work and replaced file by file, never wholesale."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so claim() always grants
    fcntl = None

#: Staging folders are named ``.partial-<pid>-<random>``: the pid says whose they are.
STAGING_PREFIX = ".partial-"
#: Temporary files are named ``.<file name>.tmp-<pid>-<random><suffix>`` (staged_file).
TEMP_MARK = ".tmp-"


def _read_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


_UMASK = _read_umask()  # read once: setting it to read it is not thread-safe

#: The files robustprune writes into a run folder, by kind of run (paths relative to the folder).
PLOT_NAMES = ("front", "steps", "amounts")  # robustprune.plots.plot_run's figures
PLOT_SUFFIXES = (".png", ".svg")
_PLOTS = tuple(f"plots/{name}{suffix}" for name in PLOT_NAMES for suffix in PLOT_SUFFIXES)
#: Files a resumable recovery keeps in its --checkpoint-dir, which may be the run folder: not foreign there,
#: and not removed with the run's own files.
RESUME_FILES = ("recover.ckpt", "pool.pt", ".recover.lock")  # the lock: left by a killed recovery, harmless
RUN_FILES = {
    "baseline": ("pruned.pt", "spec.json", "report.json"),
    "search": ("pruned.pt", "spec.json", "history.json", "front.json", "report.json", *_PLOTS),
    "demo": ("pruned.pt", "spec.json", "history.json", "front.json", "report.json", "original.json", *_PLOTS),
    "recover": ("pruned.pt", "spec.json", "recover.json", "recover_loss.png", "report.json"),
    "quantize": ("int8.pt2", "pruned.pt", "spec.json", "quantize.json", "report.json"),
    "search+recover": (
        "pruned.pt",
        "spec.json",
        "history.json",
        "front.json",
        "recover.json",
        "recover_loss.png",
        "report.json",
        *_PLOTS,
    ),
}
#: Every file robustprune may have written into a run folder, whatever the kind.
OWNED_FILES = frozenset(name for names in RUN_FILES.values() for name in names)


class RunFolderError(ValueError):
    """A run folder that cannot be written or loaded as asked (unwritable, foreign files, a spec that does not fit)."""


@contextlib.contextmanager
def staged_file(path: str | Path, mode: int | None = None) -> Iterator[Path]:
    """A new temporary file beside ``path`` for the block to write; renamed onto ``path`` when the block
    ends cleanly, removed when it raises. Its name is this call's own, so concurrent writers of one file
    never share it; it keeps ``path``'s suffix (writers that pick a format by suffix) and names the writing
    process (remove_stale_staging removes it only once that process is gone). ``mode``: the file's
    permissions (default: what the umask gives a new file)."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TEMP_MARK}{os.getpid()}-", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, (0o666 & ~_UMASK) if mode is None else mode)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def claim(path: str | Path) -> Iterator[bool]:
    """True for the block if this process now holds ``path``'s claim, False if another live process does.

    The claim is an exclusive lock on the file ``path`` (created; removed when the block ends), so the
    operating system drops it the moment its holder dies: a killed runner's work is free again, with
    nothing to clean up. Processes on one machine only (network file systems may not honour it).
    """
    if fcntl is None:
        yield True
        return
    path = Path(path)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666 & ~_UMASK)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:  # the holder before us may have removed the file we locked: then the claim is not ours
            held = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            held = False
        if not held:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for a person looking
        try:
            yield True
        finally:
            path.unlink(missing_ok=True)  # while still locked: a later claimant makes a new file
    finally:
        os.close(fd)


def save_torch(obj, path: str | Path) -> None:
    """``torch.save`` to ``path`` atomically. Through a file object, so the archive's inner folder is named
    ``archive`` rather than after the temporary file: the same object gives the same bytes."""
    import torch

    with staged_file(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def run_folder_claim(path: str | Path) -> contextlib.AbstractContextManager[bool]:
    """``claim`` on run folder ``path``, held by the command writing it from its check to its report: a second
    process writing the same folder is refused instead of mixing its files with the first's. The lock file
    lives in the temporary folder, named after the folder's absolute path, so the run folder holds no litter."""
    folder = Path(tempfile.gettempdir()) / "robustprune-locks"
    key = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:32]
    lock = folder / f"{key}.lock"
    try:
        if not folder.is_dir():
            folder.mkdir(exist_ok=True)
            with contextlib.suppress(OSError):
                os.chmod(folder, 0o1777)  # shared by every user, like /tmp
    except OSError:
        return contextlib.nullcontext(True)  # no writable temporary folder: no claim, as on Windows
    if not os.access(folder, os.W_OK | os.X_OK) or (lock.exists() and not os.access(lock, os.W_OK)):
        return contextlib.nullcontext(True)  # another user's lock folder or file: no claim possible here
    return claim(lock)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` so that ``path`` holds either the old or the whole new content, never a part."""
    with staged_file(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


#: The signals a commit holds back: Ctrl-C, and the polite kill of schedulers, ``docker stop`` and ``timeout``.
DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold back Ctrl-C and SIGTERM for the block (a few renames), then deliver them: the block runs whole or
    not at all. Afterwards Ctrl-C raises KeyboardInterrupt and SIGTERM is raised again with the previous
    handler back (by default it ends the process)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: caught.append(signum)) for s in DEFERRED_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if signal.SIGTERM in caught:
        signal.raise_signal(signal.SIGTERM)  # what it did before: by default, the process ends
    if signal.SIGINT in caught:
        raise KeyboardInterrupt


def check_writable_file(path: str | Path) -> Path:
    """``path`` is a file that can be created: its folder exists and really takes a new file."""
    out = Path(path)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise RunFolderError(f"output folder {parent} does not exist")
    if out.is_dir():
        raise RunFolderError(f"{out} is a folder, not a file name")
    _probe_writable(parent)
    return out


def _probe_writable(folder: Path) -> None:
    """Create and remove a temporary file in ``folder``: os.access says yes to /proc and /sys."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".robustprune-probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise RunFolderError(f"output folder {folder} is not writable ({exc.strerror or exc})") from None


def _owned_temp(name: str) -> bool:
    """A temporary file an interrupted atomic write of one of our files left behind."""
    return name.startswith(".") and ".tmp" in name and any(name[1:].startswith(Path(f).name) for f in OWNED_FILES)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale_staging(path: Path) -> bool:
    """A staging folder (``.partial-<pid>-<random>``) or temp file of a process that no longer runs; a name
    that only looks like one (no pid where robustprune writes one) is the user's."""
    if path.name.startswith(STAGING_PREFIX):
        pid, dash, rest = path.name[len(STAGING_PREFIX) :].partition("-")
        if not (pid.isdigit() and dash and rest):
            return False
    elif _owned_temp(path.name):
        after = path.name.partition(TEMP_MARK)[2]
        if not after:
            return path.name.endswith(".tmp")  # an older writer's ``.<name>.tmp``, which named no pid
        pid, dash, rest = after.partition("-")
        if not (pid.isdigit() and dash and rest):
            return False
    else:
        return False
    return not _pid_alive(int(pid))


def remove_stale_staging(directory: str | Path) -> list[Path]:
    """Remove what killed runs left in ``directory`` (staging folders of dead processes, temp files of our
    own files); returns what was removed. Other processes' live staging and users' files stay."""
    directory = Path(directory)
    removed = []
    for folder in (directory, directory / "plots"):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if _stale_staging(path):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _files(directory: Path) -> list[str]:
    """Relative paths of the files under ``directory`` (symlinks count as files)."""
    out = []
    for path in sorted(directory.rglob("*")):
        if path.is_symlink() or not path.is_dir():
            out.append(path.relative_to(directory).as_posix())
    return out


def is_run_spec(path: str | Path) -> bool:
    """Whether ``path`` is a spec.json that robustprune wrote (a JSON object naming its format and version):
    a user's own spec.json (an InputSpec file, say) does not make a folder a run."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "format_version" in data and "robustprune" in data and "groups" in data


def run_kind(directory: str | Path) -> str | None:
    """The kind of robustprune run a folder holds (None: no run). A run is recognized by its spec.json's
    content, every kind writes one; the other files then tell the kind."""
    directory = Path(directory)
    if not is_run_spec(directory / "spec.json"):
        return None
    if (directory / "original.json").exists():
        return "demo"
    if (directory / "quantize.json").exists() or (directory / "int8.pt2").exists():
        return "quantize"
    if (directory / "recover.json").exists():
        return "search+recover" if (directory / "history.json").exists() else "recover"
    if (directory / "history.json").exists():
        return "search"
    return "baseline"


def check_run_folder(path: str | Path, kind: str | tuple[str, ...], overwrite: bool = False) -> Path:
    """Check an output run folder before any expensive work.

    It must be creatable (a new folder, with any missing folders above it, under a writable one) or an existing
    writable folder that is empty or holds only a robustprune run of a ``kind`` asked (the first is the one
    this command writes; a later one is a run it may continue, as ``search --recover`` does its own search);
    anything else needs ``overwrite`` (which then replaces robustprune's own files only, and in a folder that
    holds no run, only the files this run writes). Raises RunFolderError.
    """
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    out = Path(path)
    if not out.exists():
        ancestor = next(p for p in out.absolute().parents if p.exists())  # missing folders are made (mkdir -p)
        if not ancestor.is_dir():
            raise RunFolderError(f"cannot make {out}: {ancestor} is a file")
        _probe_writable(ancestor)
        return out
    if not out.is_dir():
        raise RunFolderError(f"{out} exists and is not a folder")
    _probe_writable(out)
    blocked = [name for name in sorted(OWNED_FILES) if (out / name).is_dir() and not (out / name).is_symlink()]
    if blocked:
        raise RunFolderError(f"{out / blocked[0]} is a folder where robustprune writes a file; move it away")
    if overwrite:
        return out
    existing = run_kind(out)
    ours = OWNED_FILES if existing is not None else frozenset()  # same names in a folder with no run: the user's
    present = [f for f in _files(out) if not any(_stale_staging(out / p) for p in _prefixes(f))]
    foreign = [f for f in present if f not in ours and f not in RESUME_FILES]
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise RunFolderError(
            f"{out} is not empty and holds files robustprune did not write ({shown}); give --overwrite to write "
            "the run there anyway (robustprune's own files are replaced, others are kept) or choose another --out"
        )
    if existing is not None and existing not in kinds:
        raise RunFolderError(
            f"{out} holds a robustprune {existing} run; give --overwrite to replace it with this {kinds[0]} run "
            "or choose another --out"
        )
    return out


def _prefixes(relative: str) -> list[str]:
    """'a/b/c' -> ['a', 'a/b', 'a/b/c']: a file is stale if any folder above it is stale staging."""
    parts = relative.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


class staged_directory:
    """Write a run's files into a hidden staging folder, then move them into place together.

    On an exception (Ctrl-C included) the staging folder is removed and ``directory`` keeps its
    old contents (a folder made for the run is removed again). On success ``owned`` files of an
    earlier run that this one did not write are removed first (report.json, the mark of a finished
    run, among them), so no stale result stays beside the new ones; then every staged file replaces
    its namesake, report.json last. In a folder that holds no robustprune run (``run_kind``) nothing
    is owned. Files nobody staged and that are not ``owned`` (the user's) are never touched. Ctrl-C
    and SIGTERM are held back while the files move::

        with staged_directory(out, owned=OWNED_FILES) as tmp:
            write(tmp / "report.json")
    """

    def __init__(self, directory: str | Path, owned: Iterable[str] = ()) -> None:
        self.directory = Path(directory)
        self.owned = frozenset(owned)

    def __enter__(self) -> Path:
        # the folders this run makes, deepest first: removed again (when still empty) if it fails
        self.made = [p for p in (self.directory, *self.directory.absolute().parents) if not p.exists()]
        self.created = bool(self.made)
        if run_kind(self.directory) is None:
            self.owned = frozenset()  # the same names in a folder without a run are the user's files
        self.directory.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(self.directory)
        self.staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=self.directory))
        return self.staging

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                with sigint_deferred():
                    self._commit()
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)
            if exc_type is not None:
                for folder in self.made:
                    with contextlib.suppress(OSError):
                        folder.rmdir()  # only when empty: the run made it and wrote nothing there

    def _commit(self) -> None:
        written = _files(self.staging)
        # the old report.json (the mark of a finished run) and stale files go first, the new report.json last:
        # a kill in between leaves no report beside files it does not describe
        stale = self.owned - set(written)
        for relative in sorted(stale | ({"report.json"} & self.owned), key=lambda r: r != "report.json"):
            target = self.directory / relative
            if target.is_file() or target.is_symlink():
                target.unlink()
        for relative in sorted(written, key=lambda r: r == "report.json"):
            target = self.directory / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.staging / relative, target)
        for folder in {Path(r).parent for r in self.owned} - {Path(".")}:
            with contextlib.suppress(OSError):
                (self.directory / folder).rmdir()  # an owned subfolder left empty; kept when the user has files in it


__all__ = [
    "OWNED_FILES",
    "RUN_FILES",
    "RunFolderError",
    "atomic_write_json",
    "atomic_write_text",
    "check_run_folder",
    "check_writable_file",
    "file_sha256",
    "is_run_spec",
    "remove_stale_staging",
    "run_folder_claim",
    "run_kind",
    "save_torch",
    "sigint_deferred",
    "staged_directory",
    "staged_file",
]
