"""The output set of a scene: staged, committed whole, recovered after a crash; folder names.

A run writes every output into a staging folder ``<out>/.geocam-tmp-*`` (the same filesystem as
the outputs, so renames are atomic) and holds an ``flock`` on it, which the kernel releases
even when the process is killed with SIGKILL. :meth:`OutputSet.commit` then

1. flushes each staged file to disk;
2. writes the journal ``COMMIT.json`` (the files to install, the old outputs to remove) and
   renames it into the staging folder: from this point on the new set wins;
3. removes the old ``run.json`` (the completion marker), moves the new files over the old ones,
   removes old outputs the new set lacks (``preview.png`` after ``--no-preview``; sidecars such
   as ``cam.tif.aux.xml`` that describe a replaced raster), and moves the new ``run.json`` last;
4. removes the staging folder.

Every run into a folder first calls :func:`recover`: a dead run's staging folder is completed
when it holds a journal and removed otherwise; a live run's (still locked) is left alone. A
reader can rely on ``run.json``: when it is present the set is complete, and its ``files``
manifest gives each file's size and SHA-256.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from .errors import GeocamError, OutputError, ResourceError

log = logging.getLogger(__name__)

#: Name prefix of staging folders (hidden; no scene folder name can start with a dot).
STAGING_PREFIX = ".geocam-tmp-"
#: The commit journal inside a staging folder.
JOURNAL = "COMMIT.json"
#: The completion marker: written last, removed first.
MARKER = "run.json"
#: Sidecars GDAL and QGIS keep next to a raster; stale once the raster is replaced.
SIDECARS = (".aux.xml", ".ovr")

_MIB = 1 << 20


@contextmanager
def _dir_lock(folder: Path, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on a folder; yields False when ``blocking`` is off and taken."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _apply(out_dir: Path, staging: Path, journal: Mapping[str, Sequence[str]]) -> None:
    """Carry out a journal (idempotent: a second call finishes what a first one began)."""
    install = [n for n in journal["install"] if n != MARKER]
    marker_staged = (staging / MARKER).exists()
    if marker_staged:  # the new set is not complete in out_dir until its marker is in
        (out_dir / MARKER).unlink(missing_ok=True)
    for name in install:
        if (staging / name).exists():
            os.replace(staging / name, out_dir / name)
    for name in journal["remove"]:
        try:
            (out_dir / name).unlink(missing_ok=True)
        except IsADirectoryError:
            pass  # not ours: an output name is always a file
    if marker_staged:
        os.replace(staging / MARKER, out_dir / MARKER)
    _fsync(out_dir)
    shutil.rmtree(staging, ignore_errors=True)


def recover(out_dir: Path) -> list[Path]:
    """Complete or remove the staging folders that dead runs left in ``out_dir``.

    Args:
        out_dir: an output folder (nothing happens when it does not exist).

    Returns:
        The staging folders handled (live runs' are skipped).
    """
    handled: list[Path] = []
    if not out_dir.is_dir():
        return handled
    for staging in sorted(out_dir.glob(STAGING_PREFIX + "*")):
        if staging.is_symlink() or not staging.is_dir():
            continue
        with _dir_lock(staging, blocking=False) as free:
            if not free:
                continue  # a live run's
            journal = staging / JOURNAL
            if journal.is_file():
                _apply(out_dir, staging, json.loads(journal.read_text()))
                log.info("completed the interrupted commit of %s", staging)
            else:
                shutil.rmtree(staging, ignore_errors=True)
                log.info("removed %s, left by a run that did not finish", staging)
        handled.append(staging)
    return handled


class OutputSet:
    """A scene's output folder, written through a staging folder; a context manager.

    Args:
        out_dir: the output folder (created if missing; removed again on failure when it was
            created and is empty).
        names: the output file names a run may write, in install order (``run.json`` goes last
            whatever its place).

    Raises:
        OutputError: the folder cannot be created or written.
    """

    def __init__(self, out_dir: Path, names: Iterable[str]) -> None:
        self.out_dir = Path(out_dir)
        self.names = tuple(names)
        self._created = False
        self._staging: Path | None = None
        self._lock_fd: int | None = None
        self.committed = False

    @property
    def staging(self) -> Path:
        """The staging folder (inside :attr:`out_dir`)."""
        assert self._staging is not None, "use OutputSet as a context manager"
        return self._staging

    def __enter__(self) -> Self:
        out = self.out_dir
        self._created = not out.exists()
        try:
            out.mkdir(parents=True, exist_ok=True)
            with _dir_lock(out):
                recover(out)
                self._staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
                self._lock_fd = os.open(self._staging, os.O_RDONLY | os.O_DIRECTORY)
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        except OSError as err:
            self._cleanup()
            raise OutputError(
                f"`out`={str(out)!r} cannot be written ({err.strerror or err}); pass a folder "
                "you can write to"
            ) from err
        return self

    def commit(self) -> dict[str, Path]:
        """Install the staged outputs in place of the old set (steps 1-4 of the module doc).

        Returns:
            Output name to its installed path, for the files the run wrote.
        """
        out, staging = self.out_dir, self.staging
        install = [n for n in self.names if n != MARKER and (staging / n).is_file()]
        if (staging / MARKER).is_file():
            install.append(MARKER)
        stale = [n for n in self.names if n not in install]
        stale += [f"{n}{s}" for n in install for s in SIDECARS if f"{n}{s}" not in install]
        stale = [n for n in stale if (out / n).is_file()]
        for name in install:
            _fsync(staging / name)
        part = staging / f"{JOURNAL}.part"
        part.write_text(json.dumps({"install": install, "remove": stale}))
        _fsync(part)
        with _dir_lock(out):
            os.replace(part, staging / JOURNAL)
            _fsync(staging)
            self.committed = True  # the new set wins from here on, whatever happens next
            try:
                _apply(out, staging, {"install": install, "remove": stale})
            except BaseException:
                try:  # an interrupt during the moves: finish them, then let it through
                    _apply(out, staging, {"install": install, "remove": stale})
                except OSError as err:  # the next run into the folder finishes the journal
                    log.warning("commit of %s left for the next run: %s", staging, err)
                raise
        return {n: out / n for n in install}

    def _cleanup(self) -> None:
        if self._staging is not None and not self.committed:
            shutil.rmtree(self._staging, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._created and not self.committed:
            try:
                self.out_dir.rmdir()
            except OSError:
                pass

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cleanup()


def manifest(folder: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of each output in ``folder`` (``run.json`` aside: it holds the manifest).

    Args:
        folder: where the outputs are.
        names: output file names; missing ones are left out.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        path = folder / name
        if name == MARKER or not path.is_file():
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_MIB), b""):
                digest.update(chunk)
        out[name] = {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}
    return out


def _digest(paths: Sequence[Path], chars: int) -> str:
    text = "\n".join(sorted(str(Path(p).resolve()) for p in paths))
    return hashlib.sha256(text.encode()).hexdigest()[:chars]


def scene_folders(scenes: Sequence[tuple[str, Sequence[Path]]]) -> list[str]:
    """One output folder name per scene, unique even on case-insensitive filesystems.

    A scene keeps its name when no other scene's name equals it (ignoring case); scenes whose
    names clash all get ``<name>-<hash>``, the hash taken from their resolved input paths, so
    the name does not depend on the order of the inputs or on the other scenes.

    Args:
        scenes: (scene name, input files) per scene.

    Returns:
        Folder names, in the order of ``scenes``.
    """
    names = [name for name, _ in scenes]
    chars = 8
    while True:
        counts = Counter(n.casefold() for n in names)
        clashing = [i for i, n in enumerate(names) if counts[n.casefold()] > 1]
        if not clashing:
            return names
        if chars > 64:
            raise OutputError(
                f"scenes {sorted({names[i] for i in clashing})} are the same inputs given twice; "
                "give each scene once"
            )
        for i in clashing:
            name, paths = scenes[i]
            names[i] = f"{name}-{_digest(paths, chars)}"
        chars *= 2


def check_inputs_outside(
    inputs: Iterable[Path], out_dirs: Iterable[Path], names: Iterable[str]
) -> None:
    """Refuse an input file that lies where a run will write (an output, a staging folder).

    Args:
        inputs: every scene's input files.
        out_dirs: the output folders of the run.
        names: the output file names.

    Raises:
        OutputError: an input is an output path, or lies in a staging folder.
    """
    folders = [Path(d).resolve() for d in out_dirs]
    names = tuple(names)
    reserved = {
        d / n: d for d in folders for n in (*names, *(f"{n}{s}" for n in names for s in SIDECARS))
    }
    for raw in inputs:
        path = Path(raw).resolve()
        folder = reserved.get(path)
        if folder is None:
            folder = next(
                (
                    d
                    for d in folders
                    if path.parent.name.startswith(STAGING_PREFIX) and path.parent.parent == d
                ),
                None,
            )
        if folder is not None:
            raise OutputError(
                f"`scene`={str(raw)!r} lies where this run writes its outputs ({path}); move it "
                f"out of {str(folder)!r} or pass another --out"
            )


def free_mib(folder: Path) -> float | None:
    """Free space in MiB on the filesystem that holds ``folder`` (or its nearest parent)."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free / _MIB
    except OSError:
        return None


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NO_SPACE_TEXT = ("no space left", "disk is full", "disk full", "file too large", "quota")


def _root_message(err: BaseException) -> str:
    """An exception's own message, or GDAL's text where rasterio only says "see previous"."""
    current: BaseException | None = err
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = " ".join(str(current).split())
        if text and "See previous exception" not in text:
            return text
        current = current.__cause__ or current.__context__
    return type(err).__name__


@contextmanager
def io_errors(
    out_dir: Path, scene: str, disk_mib: float | None = None, outputs: OutputSet | None = None
) -> Iterator[None]:
    """Turn the I/O and memory failures of a run into geocam errors with one-line messages.

    Args:
        out_dir: the output folder (its free space goes into the message).
        scene: the scene's name.
        disk_mib: the preflight's estimate of the disk the run needs.
        outputs: the run's output set, to say whether the old outputs are unchanged.

    Raises:
        OutputError: a write or read in the output folder failed (no space, I/O error).
        ResourceError: memory ran out.
    """
    from pyogrio.errors import DataLayerError, DataSourceError
    from rasterio._err import CPLE_BaseError
    from rasterio.errors import RasterioError

    try:
        yield
    except GeocamError:
        raise
    except MemoryError as err:
        raise ResourceError(
            f"scene {scene!r} ran out of memory ({err or 'an allocation failed'}); crop the "
            "scene, raise --stride-px or lower --block-px / --batch-size"
        ) from err
    except (OSError, RasterioError, CPLE_BaseError, DataSourceError, DataLayerError) as err:
        full = _root_message(err)
        text = full if len(full) <= 160 else f"{full[:80]} ... {full[-70:]}"
        if outputs is not None and outputs.committed:
            state = "the new outputs are decided but not all in place: rerun to finish"
        else:
            state = "the old outputs are unchanged"
        free = free_mib(out_dir)
        no_space = getattr(err, "errno", None) in _NO_SPACE or any(
            t in full.lower() for t in _NO_SPACE_TEXT
        )
        if no_space or (free is not None and free < 16):
            need = f", up to {disk_mib:,.0f} MiB needed" if disk_mib else ""
            have = f"{free:,.0f} MiB free" if free is not None else "free space unknown"
            raise OutputError(
                f"`out`={str(out_dir)!r} ran out of space writing scene {scene!r} ({text}; "
                f"{have}{need}); free space or pass another --out ({state})"
            ) from err
        raise OutputError(
            f"`out`={str(out_dir)!r}: writing scene {scene!r} failed ({text}); check the folder "
            f"and its disk, then rerun ({state})"
        ) from err
