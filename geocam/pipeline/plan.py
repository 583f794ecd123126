"""Everything a run checks before any output exists: scene, bands, radiometry, grid, limits.

:func:`plan_grid` opens a scene, matches its bands to the model's, decides its radiometry and
ground scale and lays out its windows, refusing what cannot run; :func:`plan_run` adds the
output folder and the preflight limits. :func:`plan_scenes` checks a batch before any scene runs.
The scene runs (:mod:`.run`), the Dask chunks (:mod:`geocam.chunks`) and the batch checks all
plan through here, so each rule is decided once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import preflight
from ..cam import check_grid
from ..config import SceneConfig
from ..errors import ConfigError
from ..io.bands import BandMatch, match_bands
from ..io.reader import scene_radiometry
from ..io.scene import Scene, open_scene
from ..model import GeocamModel, ModelCard, load_model
from ..outputs import check_inputs_outside, scene_folders
from ..radiometry import GroundScale, Radiometry, ground_sample_m, plan_ground_scale
from ..runtime import compute_dtype, resolve_precision, torch_device
from ..tiling import grid_offsets
from .names import OUTPUT_NAMES

log = logging.getLogger(__name__)

#: Classes a uint8 class map holds besides its nodata value.
MAX_CLASSES = 254


@dataclass(frozen=True, slots=True)
class GridPlan:
    """A scene opened, matched to a model and covered with windows (no pixel of it scored).

    Attributes:
        scene: the opened scene.
        bands: which scene band feeds each model band.
        radiometry: how DNs become reflectance (None where not decided: no pixel read).
        ground: the model's window and input scale at the scene's ground sample distance.
        window_px: window edge in scene pixels.
        stride_px: window step in scene pixels.
        row_offsets: window top rows.
        col_offsets: window left columns.
    """

    scene: Scene
    bands: BandMatch
    radiometry: Radiometry | None
    ground: GroundScale
    window_px: int
    stride_px: int
    row_offsets: tuple[int, ...]
    col_offsets: tuple[int, ...]


def load_run_model(path: Path, config: SceneConfig) -> GeocamModel:
    """Load a model file on the device and in the dtype that runs with ``config`` compute in.

    Runs given this model use it as it is; a float32 model would be copied (twice the memory).
    """
    device = torch_device(config.device)
    dtype = compute_dtype(resolve_precision(config.precision, device))
    return load_model(Path(path), device, dtype)


def plan_grid(
    paths: Sequence[Path],
    card: ModelCard,
    config: SceneConfig,
    name: str | None = None,
    radiometry: bool = True,
) -> GridPlan:
    """Open a scene and lay out the windows a run with ``card`` and ``config`` scores.

    Args:
        paths: the scene's files.
        card: the model's card.
        config: the run's settings.
        name: the scene's name for messages; default from the file names.
        radiometry: decide the scene's radiometry too (may read a sample of pixels).

    Raises:
        GeocamError: the scene, its bands, its radiometry, its ground scale or the window grid
            cannot run with this model and these settings.
    """
    if len(card.classes) > MAX_CLASSES:
        raise ConfigError(
            f"`model` has {len(card.classes)} classes; at most {MAX_CLASSES} fit a uint8 map"
        )
    scene = open_scene(paths, name=name, nodata=config.nodata, dn_offset=config.dn_offset)
    bands = match_bands(scene, card.bands, config.bands)
    decided = None
    if radiometry:
        decided = scene_radiometry(
            scene,
            bands,
            level=config.level,
            reflectance_scale=config.reflectance_scale,
            dn_offset_declared=config.dn_offset is not None,
            l2a_path_radiance=config.l2a_path_radiance,
            check=config.radiometry_check,
        )
    ground = plan_ground_scale(
        ground_sample_m(scene.crs, scene.transform, scene.shape_rc),
        card.gsd_m,
        card.window_px,
        card.input_scale,
    )
    window_px, stride_px = config.resolved_window(ground.window_px)
    check_grid(config.mode, config.grid, window_px, stride_px, ground.input_scale)
    rows, cols = grid_offsets(scene.height, scene.width, window_px, stride_px, config.grid)
    log.info(
        "scene %s: %d x %d windows of %d px at stride %d px (%s mode, %s grid)",
        scene.name,
        len(rows),
        len(cols),
        window_px,
        stride_px,
        config.mode,
        config.grid,
    )
    return GridPlan(scene, bands, decided, ground, window_px, stride_px, rows, cols)


def plan_run(
    paths: Sequence[Path],
    card: ModelCard,
    config: SceneConfig,
    out_dir: Path,
    name: str | None = None,
    radiometry: bool = True,
    warn: bool = True,
) -> tuple[GridPlan, preflight.Estimate]:
    """Plan a scene run into ``out_dir`` and check it against the preflight limits.

    Args:
        paths: the scene's files.
        card: the model's card.
        config: the run's settings.
        out_dir: the scene's output folder.
        name: the scene's name.
        radiometry: decide the scene's radiometry too (may read a sample of pixels).
        warn: warn when the disk may not hold the run.

    Raises:
        GeocamError: the scene cannot run (:func:`plan_grid`), an input lies where an output
            will be written, or the run is past the preflight limits.
    """
    grid = plan_grid(paths, card, config, name, radiometry)
    scene = grid.scene
    check_inputs_outside(paths, [out_dir], OUTPUT_NAMES.values())
    estimate = preflight.estimate(
        scene.shape_rc,
        len(card.classes),
        grid.window_px,
        grid.stride_px,
        grid.row_offsets,
        grid.col_offsets,
        config,
        out_dir,
        grid.ground.input_scale,
    )
    preflight.check(estimate, config, scene.name, grid.stride_px, len(card.classes), warn=warn)
    return grid, estimate


def plan_scenes(
    scenes: Sequence[tuple[str, Sequence[Path]]],
    card: ModelCard,
    config: SceneConfig,
    out_dir: Path,
) -> list[Path]:
    """Check every scene before any work, and give each its own output folder.

    One scene writes into ``out_dir``; several write into ``out_dir/<name>``, names made unique
    by :func:`geocam.outputs.scene_folders`.

    Args:
        scenes: (name, files) per scene (see :func:`iter_scene_inputs`).
        card: the model's card.
        config: the run's settings.
        out_dir: the output folder.

    Returns:
        The output folder of each scene.

    Raises:
        GeocamError: a scene cannot run, past the preflight limits, or an input lies where an
            output will be written.
    """
    if len(scenes) == 1:
        folders = [Path(out_dir)]
    else:
        folders = [Path(out_dir) / n for n in scene_folders(scenes)]
        for (name, paths), folder in zip(scenes, folders, strict=True):
            if folder.name != name:
                log.warning(
                    "scene %s (%s) shares its name with another scene: its outputs go to %s",
                    name,
                    ", ".join(map(str, paths)),
                    folder,
                )
    inputs = [p for _, paths in scenes for p in paths]
    check_inputs_outside(inputs, folders, OUTPUT_NAMES.values())
    for (name, paths), folder in zip(scenes, folders, strict=True):
        plan_run(paths, card, config, folder, name, radiometry=False, warn=False)
    return folders


def iter_scene_inputs(paths: Sequence[Path]) -> Iterator[tuple[str, tuple[Path, ...]]]:
    """Scenes named by command-line inputs (see :func:`geocam.io.sentinel2.group_inputs`)."""
    from ..io.sentinel2 import group_inputs

    yield from group_inputs(paths)
