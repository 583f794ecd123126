"""Fault injection into runs: kill -9, SIGINT/SIGTERM, full disks, memory; reruns; determinism.

Every case ends in a complete, correct output set or a one-line message (exit 2; 130/143 for
signals) with nothing half-written left behind. Killed runs are rerun and compared by SHA-256
with a clean run (the ``reference`` fixture). Faults are injected by ``fault_driver.py`` in a
subprocess.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ARGS, CONFIG, DRIVER, cli, complete_set, digests, drive, old_set, one_error

from geocam import pipeline, run_scene
from geocam.cli.logs import RUN_LOG
from geocam.errors import ResourceError
from geocam.outputs import STAGING_PREFIX, recover
from geocam.pipeline import run, write  # noqa: F401 - the modules the faults patch
from geocam.provenance import Provenance, provenance_date
from geocam.stitch import CellGrid

# ---- kill -9 at many points; the rerun equals a clean run --------------------------------------

#: (fault, which set the folder holds once recovered: the old one, or the new one)
KILLS = [
    pytest.param("geocam.stitch:CellGrid.add@2:kill", "old", id="pass1"),
    pytest.param(
        "geocam.pipeline.raster_pass:_write_block@1:kill", "old", id="pass2", marks=pytest.mark.slow
    ),
    pytest.param(
        "geocam.pipeline.write:write_cog@2:kill", "old", id="cogs", marks=pytest.mark.slow
    ),
    pytest.param(
        "geocam.pipeline.write:write_geojson@1:kill", "old", id="vectors", marks=pytest.mark.slow
    ),
    pytest.param(
        "geocam.pipeline.run:write_json@1:kill", "old", id="run.json", marks=pytest.mark.slow
    ),
    pytest.param("geocam.outputs:_fsync@3:kill", "old", id="flush", marks=pytest.mark.slow),
    pytest.param("commit@1:kill", "new", id="journal", marks=pytest.mark.slow),
    pytest.param("commit@4:kill", "new", id="moves"),
    pytest.param("commit@7:kill", "new", id="marker", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("fault", "holds"), KILLS)
def test_kill_9_then_rerun_equals_a_clean_run(
    fault: str, holds: str, scene: Path, tiny_model: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    before = old_set(reference, out)
    proc = drive(fault, str(scene), "--model", str(tiny_model), "--out", str(out), *ARGS)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    recover(out)  # what any next run does first: the folder holds one whole set
    assert complete_set(out) == (before if holds == "old" else digests(reference / "clean"))
    run_scene(scene, tiny_model, out, CONFIG)
    assert complete_set(out) == digests(reference / "clean")


@pytest.mark.slow
def test_kill_9_with_no_old_outputs_leaves_a_folder_the_rerun_cleans(
    scene: Path, tiny_model: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = drive("geocam.pipeline.write:write_cog@1:kill", str(scene), "--model", str(tiny_model),
                 "--out", str(out), *ARGS)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL
    left = [p.name[: len(STAGING_PREFIX)] for p in out.iterdir() if p.name != RUN_LOG]
    assert left == [STAGING_PREFIX]
    code, stderr = cli(str(scene), "--model", str(tiny_model), "--out", str(out), *ARGS)
    assert code == 0, stderr
    assert complete_set(out) == digests(reference / "clean")


# ---- SIGINT and SIGTERM ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "signum", "holds"),
    [
        ("geocam.pipeline.raster_pass:_write_block@1:int", signal.SIGINT, "old"),
        pytest.param(
            "geocam.stitch:CellGrid.add@2:term", signal.SIGTERM, "old", marks=pytest.mark.slow
        ),
        # in the last stage (COGs, vectors, commit) the scene is finished first
        pytest.param(
            "geocam.pipeline.write:write_cog@1:int", signal.SIGINT, "new", marks=pytest.mark.slow
        ),
        ("commit@3:term", signal.SIGTERM, "new"),
    ],
)
def test_signals_give_one_line_and_a_whole_set(
    fault: str,
    signum: signal.Signals,
    holds: str,
    scene: Path,
    tiny_model: Path,
    reference: Path,
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    before = old_set(reference, out)
    proc = drive(fault, str(scene), "--model", str(tiny_model), "--out", str(out), *ARGS)
    one_error(proc.returncode, proc.stderr, f"interrupted by {signum.name}", 128 + signum)
    # no recover(): the interrupted run itself left one whole set and no staging folder
    assert complete_set(out) == (before if holds == "old" else digests(reference / "clean"))


def test_an_interrupt_during_the_moves_finishes_them(
    scene: Path, tiny_model: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geocam import outputs

    out = tmp_path / "out"
    old_set(reference, out)
    real_apply, real_replace = outputs._apply, os.replace
    moves = [0]

    def replace(*args: str) -> None:
        moves[0] += 1
        if moves[0] == 3:
            raise KeyboardInterrupt  # Ctrl-C in a library caller, half-way through the moves
        real_replace(*args)

    def apply(*args: object) -> None:
        monkeypatch.setattr(os, "replace", replace)
        try:
            real_apply(*args)
        finally:
            monkeypatch.setattr(os, "replace", real_replace)

    monkeypatch.setattr(outputs, "_apply", apply)
    with pytest.raises(KeyboardInterrupt):
        run_scene(scene, tiny_model, out, CONFIG)
    assert complete_set(out) == digests(reference / "clean")


# ---- full disks ------------------------------------------------------------------------------


def _tmpfs_works(tmp_path: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    ok = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {probe}"],
        check=False,
        capture_output=True,
    )
    return ok.returncode == 0


#: tmpfs sizes that fill up at different stages here: work files, GeoPackage creation and
#: features, COG directory, preview/run.json. A size that turns out large enough must give a
#: whole, correct set.
SIZES = [
    "100k",
    *(pytest.param(s, marks=pytest.mark.slow) for s in ("200k", "300k", "400k", "500k")),
]


@pytest.mark.parametrize("size", SIZES)
def test_full_disk_on_a_small_tmpfs(
    size: str, scene: Path, tiny_model: Path, reference: Path, tmp_path: Path
) -> None:
    if not _tmpfs_works(tmp_path):
        pytest.skip("no unprivileged tmpfs (unshare -rm) here")
    disk = tmp_path / "disk"
    disk.mkdir()
    out = disk / "out"
    args = " ".join([str(scene), "--model", str(tiny_model), "--out", str(out), *ARGS])
    script = (
        f"mount -t tmpfs -o size={size} tmpfs {disk} && "
        f"{sys.executable} {DRIVER} none run {args}; code=$?; "
        f"ls -A {disk} > {tmp_path}/left.txt; cp -r {disk} {tmp_path}/copy; exit $code"
    )
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    left = (tmp_path / "left.txt").read_text().split()
    if proc.returncode == 0 and size != "100k":  # it fitted: a whole, correct set
        assert left == ["out"]
        assert complete_set(tmp_path / "copy/out") == digests(reference / "clean")
        return
    one_error(proc.returncode, proc.stderr, "ran out of space")
    assert left == []  # nothing left on the disk


def test_a_write_that_finds_the_disk_full(
    scene: Path, tiny_model: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    before = old_set(reference, out)

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pipeline.run, "write_json", full)
    code, stderr = cli(str(scene), "--model", str(tiny_model), "--out", str(out), *ARGS)
    one_error(code, stderr, "ran out of space")
    assert "old outputs are unchanged" in stderr and complete_set(out) == before


def test_a_geopackage_that_finds_the_disk_full(
    scene: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyogrio.errors import DataSourceError

    def full(*args: object, **kwargs: object) -> None:
        raise DataSourceError("sqlite3_exec(CREATE TABLE x) failed: database or disk is full")

    monkeypatch.setattr(pipeline.write, "write_gpkg", full)
    out = tmp_path / "out"
    code, stderr = cli(str(scene), "--model", str(tiny_model), "--out", str(out), *ARGS)
    one_error(code, stderr, "ran out of space")
    assert not out.exists()


def test_memory_running_out_is_one_line(
    scene: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def huge(*args: object, **kwargs: object) -> None:
        raise MemoryError("Unable to allocate 146. GiB for an array with shape (10, 62501, 62501)")

    monkeypatch.setattr(CellGrid, "__init__", huge)
    out = tmp_path / "out"
    code, stderr = cli(str(scene), "--model", str(tiny_model), "--out", str(out), *ARGS)
    one_error(code, stderr, "ran out of memory (Unable to allocate 146. GiB")
    assert not out.exists()
    with pytest.raises(ResourceError):
        run_scene(scene, tiny_model, out, CONFIG)


# ---- reruns, stale staging folders, determinism --------------------------------------------


def test_rerun_without_preview_leaves_no_old_preview(
    scene: Path, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run_scene(scene, tiny_model, out, CONFIG)
    (out / "cam.tif.aux.xml").write_text("<PAMDataset/>")  # e.g. QGIS statistics of cam.tif
    run_scene(scene, tiny_model, out, CONFIG.replace(preview=False))
    assert not (out / "preview.png").exists() and not (out / "cam.tif.aux.xml").exists()
    assert "preview.png" not in complete_set(out)


def test_stale_staging_folders_are_removed_live_ones_kept(
    scene: Path, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    (out / f"{STAGING_PREFIX}dead").mkdir(parents=True)
    (out / f"{STAGING_PREFIX}dead" / "work_heat.tif").write_bytes(b"x" * 100)
    live = out / f"{STAGING_PREFIX}live"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a run in progress holds it
        run_scene(scene, tiny_model, out, CONFIG.replace(preview=False))
        assert not (out / f"{STAGING_PREFIX}dead").exists() and live.exists()
    finally:
        os.close(fd)
    run_scene(scene, tiny_model, out, CONFIG.replace(preview=False))
    assert not live.exists()


def test_two_runs_give_the_same_bytes(
    scene: Path, tiny_model: Path, reference: Path, tmp_path: Path
) -> None:
    run_scene(scene, tiny_model, tmp_path / "again", CONFIG)
    assert digests(tmp_path / "again") == digests(reference / "clean")
    with sqlite3.connect(tmp_path / "again/salient.gpkg") as db:
        changed = db.execute("SELECT last_change FROM gpkg_contents").fetchone()[0]
    # the provenance date (the scene's newest mtime), never the clock
    assert changed == Provenance("", "", "", provenance_date([scene])).gpkg_date
