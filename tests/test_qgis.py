"""The outputs open in real QGIS: styles, class legend, heat, polygons and project (PyQGIS).

PyQGIS is built for Debian's ``/usr/bin/python3`` (``apt-get install python3-qgis
qgis-providers``), not for this environment's Python, so ``qgis_open.py`` runs there in a
subprocess. Without it the tests skip, saying why.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REAL_MODEL, SAMPLE

from geocam import SceneConfig, run_scene
from geocam.cli import main

SYSTEM_PYTHON = Path("/usr/bin/python3")
SCRIPT = Path(__file__).with_name("qgis_open.py")


def qgis_env(tmp: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}
    }
    runtime = tmp / "xdg"
    runtime.mkdir(mode=0o700, exist_ok=True)
    return {**env, "QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(runtime)}


@cache
def qgis_missing() -> str | None:
    """Why PyQGIS cannot run here, or None."""
    if not SYSTEM_PYTHON.exists():
        return f"{SYSTEM_PYTHON} not found (PyQGIS needs Debian's python3)"
    probe = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import qgis.core"],
        check=False, capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}},
    )  # fmt: skip
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        return (
            f"`{SYSTEM_PYTHON} -c 'import qgis.core'` fails ({last}); "
            "apt-get install python3-qgis qgis-providers"
        )
    return None


@pytest.fixture
def qgis() -> None:
    reason = qgis_missing()
    if reason:
        pytest.skip(reason)


def open_in_qgis(tmp_path: Path, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [str(SYSTEM_PYTHON), str(SCRIPT), *args],
        check=False, capture_output=True, text=True, timeout=600, env=qgis_env(tmp_path),
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    assert lines, f"qgis_open.py printed nothing (exit {done.returncode}): {done.stderr[-2000:]}"
    summary: dict[str, object] = json.loads(lines[-1])
    assert done.returncode == 0 and not summary["problems"], summary["problems"]
    return summary


@pytest.mark.skipif(not REAL_MODEL.exists(), reason=f"bundled model {REAL_MODEL.name} missing")
def test_sample_run_opens_in_qgis(qgis: None, tmp_path: Path) -> None:
    out, render = tmp_path / "demo", tmp_path / "render"
    run_scene(SAMPLE, REAL_MODEL, out, SceneConfig(threads=1))
    summary = open_in_qgis(tmp_path, str(out), str(render))
    for name in ("classes", "cam", "salient", "geojson", "project"):
        assert (render / f"{name}.png").stat().st_size > 1000, name
    assert summary["heat_band"] == 1  # AnnualCrop covers most of the sample


def test_batch_project_opens_in_qgis(
    qgis: None, s2_scene: Path, make_scene: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    other = make_scene("other.tif", seed=1)
    out = tmp_path / "batch"
    result = CliRunner().invoke(
        main, ["run", str(s2_scene), str(other), "--model", str(tiny_model), "--out", str(out),
               "--threads", "1", "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "project.qgs").exists()
    open_in_qgis(tmp_path, "--batch", str(out), "scene", "other")


def test_without_pyqgis_the_skip_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    module = sys.modules[__name__]
    monkeypatch.setattr(module, "SYSTEM_PYTHON", Path(sys.executable))  # a Python without qgis
    qgis_missing.cache_clear()
    try:
        reason = qgis_missing()
    finally:
        qgis_missing.cache_clear()
    assert reason is not None and "No module named 'qgis'" in reason
    assert "apt-get install python3-qgis qgis-providers" in reason
