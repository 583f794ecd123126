"""run_scene(): the one place that chains the stages, block by block, with bounded memory.

Pass 1 (model): for each output block, read the pixels its windows need (block plus halo,
windowed), render them, score the windows with the engine (the next block is read while this one
is scored), add each window's raw CAM and probabilities to the scene's stitching lattice
(:class:`~geocam.stitch.CellGrid`, half a feature cell per lattice cell), and write the block's
validity mask to a work GeoTIFF. Pass 2: for each block (with a halo for sieving), render the
per-pixel CAM and probabilities from the lattice, normalise once per scene, write the heat and
class map to work GeoTIFFs (in a background thread) and polygonise. Then build the COGs, the
vectors, the preview and run.json in a temporary folder and move each into place with
``os.replace``: an error leaves no half-written output behind.

In the code: :func:`iter_run_scene` checks the inputs and owns the temporary folder; ``_run``
chains ``_model_pass`` (pass 1), ``_raster_pass`` (pass 2), ``_write_outputs`` and ``_record``.
"""

from __future__ import annotations

import logging
import os
import platform
import time
import warnings
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import rasterio
import torch
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import array_bounds
from rasterio.windows import Window
from threadpoolctl import threadpool_limits

from . import allocator, preflight
from .cam import Engine, compute_dtype, make_engine, resolve_precision, torch_device
from .config import SceneConfig, to_mapping
from .errors import ConfigError, ModelFormatError, SceneError
from .export import polygons_frame, write_geojson, write_gpkg, write_json, write_text
from .model import GeocamModel, ModelCard, load_model
from .outputs import OutputSet, check_inputs_outside, io_errors, manifest, scene_folders
from .polygonize import (
    Piece,
    SalientPolygon,
    block_pieces,
    merge_pieces,
    row_areas_m2,
    salient_mask,
    sieve_mask,
)
from .preview import TRUE_COLOUR, PreviewGrid, write_scene_preview
from .project import SceneLayers, project_xml
from .provenance import Provenance, geocam_version, provenance_date
from .radiometry import GroundScale, Radiometry, ground_sample_m, plan_ground_scale
from .raster import (
    PyramidWriter,
    TiledWriter,
    class_colours,
    read_window,
    write_category_names,
    write_cog,
)
from .runtime import torch_threads
from .scene import BandMatch, Scene, SceneReader, match_bands, open_scene, render, scene_radiometry
from .stitch import NO_CLASS, CellGrid, class_map, normalise
from .styles import cam_qml, classes_qml, salient_qml
from .tiling import Block, Tile, grid_offsets, iter_blocks

log = logging.getLogger(__name__)

#: Output file names of one scene.
OUTPUT_NAMES: dict[str, str] = {
    "cam": "cam.tif",
    "classes": "classes.tif",
    "classes_aux": "classes.tif.aux.xml",
    "gpkg": "salient.gpkg",
    "geojson": "salient.geojson",
    "preview": "preview.png",
    "preview_world": "preview.pgw",
    "preview_aux": "preview.png.aux.xml",
    "cam_style": "cam.qml",
    "classes_style": "classes.qml",
    "salient_style": "salient.qml",
    "project": "project.qgs",
    "run": "run.json",
}


@dataclass(frozen=True, slots=True)
class Progress:
    """A progress event.

    Attributes:
        scene: scene name.
        stage: ``"windows"`` (model pass) or ``"blocks"`` (normalisation and polygons).
        done: units finished so far; each stage starts with an event of ``done`` = 0.
        total: units in this stage.
    """

    scene: str
    stage: str
    done: int
    total: int


@dataclass(frozen=True, slots=True)
class SceneOutputs:
    """What a scene run wrote.

    Attributes:
        out_dir: the output folder.
        files: output kind (``"cam"``, ``"classes"``, ...) to path.
        windows: windows scored by the model.
        windows_skipped: windows skipped as mostly nodata.
        seconds: wall time of the whole run.
        model_seconds: time spent in the model.
        polygons: number of salient polygons.
        layers: what a QGIS project shows of the scene (for a batch's project).
    """

    out_dir: Path
    files: dict[str, Path]
    windows: int
    windows_skipped: int
    seconds: float
    model_seconds: float
    polygons: int
    layers: SceneLayers | None = None


@dataclass(slots=True)
class _Timer:
    """Seconds per stage, and the run's start (``time.perf_counter()``)."""

    start: float
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, start: float) -> float:
        now = time.perf_counter()
        self.seconds[key] = self.seconds.get(key, 0.0) + now - start
        return now


def run_scene(
    scene: Path | Sequence[Path],
    model: Path | GeocamModel,
    out_dir: Path,
    config: SceneConfig | None = None,
    name: str | None = None,
) -> SceneOutputs:
    """Score a scene and write its CAM heat layers, class map, polygons, preview and run.json.

    Args:
        scene: a GeoTIFF, or the band files of one Sentinel-2 product.
        model: a geocam ``.safetensors`` model file, or a loaded model.
        out_dir: output folder (created if missing).
        config: run settings; defaults to :class:`SceneConfig`'s defaults.
        name: scene name for messages; default from the file names.

    Returns:
        The written files and counts.

    Raises:
        GeocamError: bad input (scene, bands, model, settings, output folder); nothing is left
            half-written.
    """
    gen = iter_run_scene(scene, model, out_dir, config, name)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            result: SceneOutputs = stop.value
            return result


def load_run_model(path: Path, config: SceneConfig) -> GeocamModel:
    """Load a model file on the device and in the dtype that runs with ``config`` compute in.

    Runs given this model use it as it is; a float32 model would be copied (twice the memory).
    """
    device = torch_device(config.device)
    dtype = compute_dtype(resolve_precision(config.precision, device))
    return load_model(Path(path), device, dtype)


def iter_run_scene(
    scene: Path | Sequence[Path],
    model: Path | GeocamModel,
    out_dir: Path,
    config: SceneConfig | None = None,
    name: str | None = None,
    wrap_engine: Callable[[Engine], Engine] | None = None,
) -> Generator[Progress, None, SceneOutputs]:
    """Like :func:`run_scene`, yielding :class:`Progress` events; returns :class:`SceneOutputs`.

    Args:
        scene: a GeoTIFF, or the band files of one Sentinel-2 product.
        model: a geocam model file or a loaded model.
        out_dir: output folder.
        config: run settings.
        name: scene name.
        wrap_engine: replaces the engine the run built (e.g. with
            :class:`geocam.chunks.ReplayEngine`: scores computed by Dask workers).
    """
    config = config or SceneConfig()
    paths = (Path(scene),) if isinstance(scene, str | Path) else tuple(Path(p) for p in scene)
    out_dir = Path(out_dir)
    # Validate every input before anything is created.
    device = torch_device(config.device)
    precision = resolve_precision(config.precision, device)
    loaded = model if isinstance(model, GeocamModel) else load_run_model(Path(model), config)
    t_start = time.perf_counter()  # the model load is timed apart: one model serves many scenes
    card = loaded.card
    if len(card.classes) > 254:
        raise ConfigError(f"`model` has {len(card.classes)} classes; at most 254 fit a uint8 map")
    opened = open_scene(paths, name=name, nodata=config.nodata, dn_offset=config.dn_offset)
    bands = match_bands(opened, card.bands, config.bands)
    radiometry = scene_radiometry(
        opened,
        bands,
        level=config.level,
        reflectance_scale=config.reflectance_scale,
        dn_offset_declared=config.dn_offset is not None,
        l2a_path_radiance=config.l2a_path_radiance,
        check=config.radiometry_check,
    )
    ground = plan_ground_scale(
        ground_sample_m(opened.crs, opened.transform, opened.shape_rc),
        card.gsd_m,
        card.window_px,
        card.input_scale,
    )
    window_px, stride_px = config.resolved_window(ground.window_px)
    if config.mode == "dense":
        from .dense import DenseEngine

        DenseEngine.check_grid(window_px, stride_px)
        if config.grid != "torchgeo":
            raise ConfigError(
                f"`grid`={config.grid!r}: dense mode needs every window on one 32 px lattice; "
                "use --grid torchgeo or --mode exact"
            )
    rows, cols = grid_offsets(opened.height, opened.width, window_px, stride_px, config.grid)
    check_inputs_outside(paths, [out_dir], OUTPUT_NAMES.values())
    estimate = preflight.estimate(
        opened.shape_rc, len(card.classes), window_px, stride_px, rows, cols, config, out_dir,
        ground.input_scale,
    )  # fmt: skip
    preflight.check(estimate, config, opened.name, stride_px, len(card.classes))
    engine_threads = config.threads or os.cpu_count() or 1
    engine = make_engine(
        config.mode, loaded.net, config.batch_size, device, precision, ground.input_scale
    )
    if wrap_engine is not None:
        engine = wrap_engine(engine)
    provenance = Provenance(
        geocam_version(), loaded.sha256, opened.name, provenance_date(opened.paths)
    )
    with (
        OutputSet(out_dir, OUTPUT_NAMES.values()) as outputs,
        io_errors(out_dir, opened.name, estimate.disk_mib, outputs),
    ):
        with rasterio.Env(**dict(config.gdal_env)), torch_threads(engine_threads):
            timer = _Timer(t_start)
            timer.add("setup", t_start)  # model load, scene open, engine
            job = _Job(
                opened, loaded, bands, engine, config, window_px, stride_px, rows, cols,
                outputs.staging, timer, provenance, radiometry, ground, out_dir, estimate,
            )  # fmt: skip
            result, layers = yield from _run(job)
        installed = outputs.commit()
    files = {key: installed[fname] for key, fname in OUTPUT_NAMES.items() if fname in installed}
    return SceneOutputs(
        out_dir=out_dir,
        files=files,
        windows=result["windows"]["scored"],
        windows_skipped=result["windows"]["skipped_nodata"],
        seconds=time.perf_counter() - t_start,
        model_seconds=result["timings_s"]["model"],
        polygons=result["polygons"]["total"],
        layers=layers,
    )


def write_batch_project(out_dir: Path, runs: Sequence[SceneOutputs]) -> Path:
    """Write one QGIS project (``project.qgs`` in ``out_dir``) showing every scene of a batch.

    Each scene gets its group, with paths relative to ``out_dir``; the project takes the first
    scene's CRS. The file is written under a temporary name and renamed.

    Args:
        out_dir: the batch's output folder, holding the scenes' folders.
        runs: the scene runs.

    Returns:
        The project's path.

    Raises:
        ValueError: no run has a project description.
    """
    scenes = []
    for run in runs:
        if run.layers is not None:
            folder = Path(os.path.relpath(run.out_dir, out_dir)).as_posix()
            scenes.append(replace(run.layers, folder=folder))
    if not scenes:
        raise ValueError("no scene run to put in a project")
    path = Path(out_dir) / OUTPUT_NAMES["project"]
    text = project_xml(
        scenes, title=f"geocam batch: {len(scenes)} scenes", created="",
        abstract="; ".join(s.name for s in scenes),
    )  # fmt: skip
    tmp = path.with_name(f".{path.name}.tmp")
    write_text(tmp, text)
    os.replace(tmp, path)
    return path


def peak_rss_mib() -> float | None:
    """This process's peak resident memory so far, in MiB (None where it cannot be read).

    Linux's ``VmHWM`` belongs to the program's own address space. ``getrusage``'s ``ru_maxrss``
    does not: a child inherits its parent's peak at fork, so a large parent masks its child's.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "gdal": rasterio.__gdal_version__}
    for pkg in ("geocam", "torch", "timm", "torchgeo", "rasterio", "numpy", "shapely", "pyproj",
                "geopandas", "pyogrio"):  # fmt: skip
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def _region(block: Block, tiles: Sequence[Tile], window_px: int, context_px: int = 0) -> Window:
    """The pixels a block needs: the block, its windows, and ``context_px`` around the windows."""
    r0, c0 = int(block.window.row_off), int(block.window.col_off)
    r1, c1 = r0 + int(block.window.height), c0 + int(block.window.width)
    if tiles:
        r0 = min(r0, min(t.row_off for t in tiles) - context_px)
        c0 = min(c0, min(t.col_off for t in tiles) - context_px)
        r1 = max(r1, max(t.row_off for t in tiles) + window_px + context_px)
        c1 = max(c1, max(t.col_off for t in tiles) + window_px + context_px)
    return Window(c0, r0, c1 - c0, r1 - r0)


@dataclass(slots=True)
class _Prepared:
    """A block's pixels, read and rendered ahead of the model."""

    block: Block
    region: Window
    valid: npt.NDArray[np.bool_]
    todo: list[Tile]
    image: npt.NDArray[np.float32] | None


def _prepare(
    block: Block,
    reader: SceneReader,
    card: ModelCard,
    radiometry: Radiometry,
    window_px: int,
    context_px: int,
    min_valid: float,
    on_read: Callable[[Block, Window, npt.NDArray[np.float32], npt.NDArray[np.bool_]], None]
    | None = None,
) -> _Prepared:
    """Read a block's region, keep the windows with enough valid pixels, render them if any.

    ``on_read`` (if given) sees the region's pixels first.
    """
    region = _region(block, block.tiles, window_px, context_px)
    rr, rc = int(region.row_off), int(region.col_off)
    dn, valid = reader.read(region)
    if on_read is not None:
        on_read(block, region, dn, valid)
    todo = [
        tile
        for tile in block.tiles
        if valid[
            tile.row_off - rr : tile.row_off - rr + window_px,
            tile.col_off - rc : tile.col_off - rc + window_px,
        ].mean()
        >= min_valid
    ]
    image = render(dn, valid, card, radiometry, reader.band_indexes) if todo else None
    return _Prepared(block, region, valid, todo, image)


def _start(pool: ThreadPoolExecutor) -> None:
    """Start a one-thread pool's worker before it gets work that uses open datasets.

    ``submit`` starts the thread; an exception that lands there (Ctrl-C) leaves the thread
    running but unknown to the pool, whose shutdown then does not wait for it. Started with a
    task that touches nothing, the thread can only be lost before any real work is queued.
    """
    pool.submit(int).result()


def _ahead[T, U](
    items: Iterator[T], fn: Callable[[T], U], pool: ThreadPoolExecutor, depth: int = 1
) -> Iterator[U]:
    """``map(fn, items)`` in order, ``depth`` results computed in ``pool`` ahead of the one in use.

    Memory stays bounded by ``depth + 1`` results.
    """
    pending: deque[Future[U]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) > depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


@dataclass(slots=True)
class _Finished:
    """A block's final rasters and polygon pieces (pass 2)."""

    heat: npt.NDArray[np.float32]
    cls: npt.NDArray[np.uint8]
    pieces: list[list[Piece]]
    seconds: dict[str, float]  # thread seconds; run.json sums them over blocks


def _finish_block(
    block: Block,
    valid: npt.NDArray[np.bool_],
    cells: CellGrid,
    scene_max: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32],
    config: SceneConfig,
) -> _Finished:
    """Render a block from the lattice, normalise it, and polygonise its salient pixels.

    The block is rendered with a halo of ``sieve_px`` (``valid`` covers block and halo), so that
    sieving does not depend on the blocks.
    """
    t0 = time.perf_counter()
    halo = config.sieve_px
    r0, c0 = int(block.window.row_off), int(block.window.col_off)
    h, w = int(block.window.height), int(block.window.width)
    # Probabilities only for classes whose heat can reach the threshold (they serve polygons).
    heat_floor = config.threshold * np.where(scene_max > 0, scene_max, 1.0).astype(np.float32)
    px = cells.render(
        (r0 - halo, c0 - halo),
        (h + 2 * halo, w + 2 * halo),
        heat_floor if config.threshold > 0 else None,
    )
    covered = px.covered & valid
    cls = class_map(px.cam, bias, covered)
    heat = normalise(px.cam, scene_max, out=px.cam)  # the raw CAM is not needed after this
    if not covered.all():
        heat[:, ~covered] = np.nan
    inner = (slice(halo, halo + h), slice(halo, halo + w))
    t1 = time.perf_counter()
    # Classes whose heat stays under the threshold in this block have no salient pixel here.
    peaks = np.fmax.reduce(heat.reshape(len(bias), -1), axis=1)
    pieces: list[list[Piece]] = []
    for c in range(len(bias)):
        if not peaks[c] >= config.threshold:
            pieces.append([])
            continue
        mask = salient_mask(heat[c], px.prob[c], cls, c, config.threshold, config.min_probability)
        mask = sieve_mask(mask, config.sieve_px)[inner]
        pieces.append(block_pieces(mask, heat[c][inner], px.prob[c][inner], block.transform))
    return _Finished(
        heat=heat[:, inner[0], inner[1]],
        cls=cls[inner],
        pieces=pieces,
        seconds={"block_render": t1 - t0, "block_polygons": time.perf_counter() - t1},
    )


def _write_block(
    window: Window,
    heat: npt.NDArray[np.float32],
    cls: npt.NDArray[np.uint8],
    heat_out: PyramidWriter,
    cls_out: TiledWriter,
) -> None:
    heat_out.write(window, heat)
    cls_out.write(window, cls[None])


def _write_cogs(
    heat: Path,
    classes: Path,
    tmp: Path,
    names: Sequence[str],
    overviews: bool,
    gdal_env: Mapping[str, Any],
) -> float:
    """Write the heat and class COGs from their work files; return the seconds taken."""
    start = time.perf_counter()
    with rasterio.Env(**dict(gdal_env)):  # GDAL settings are per thread
        write_cog(heat, tmp / OUTPUT_NAMES["cam"], "heat-cog", overviews)
        write_cog(classes, tmp / OUTPUT_NAMES["classes"], "class-cog", overviews)
    write_category_names(tmp / OUTPUT_NAMES["classes"], names)
    return time.perf_counter() - start


@dataclass(slots=True)
class _Job:
    """One scene run's inputs and settings, shared by its stages."""

    scene: Scene
    model: GeocamModel
    bands: BandMatch
    engine: Engine
    config: SceneConfig
    window_px: int
    stride_px: int
    row_offsets: Sequence[int]
    col_offsets: Sequence[int]
    tmp: Path
    timer: _Timer
    provenance: Provenance
    radiometry: Radiometry
    ground: GroundScale
    out_dir: Path
    estimate: preflight.Estimate

    @property
    def names(self) -> list[str]:
        return list(self.model.card.classes)

    @property
    def grid(self) -> dict[str, Any]:
        """The scene grid, as the raster writers take it."""
        s = self.scene
        return {"crs": s.crs, "transform": s.transform, "shape_rc": s.shape_rc}

    def work(self, name: str) -> Path:
        """A work file in the run's temporary folder."""
        return self.tmp / f"work_{name}.tif"

    def blocks(self, tiles: bool = True) -> Iterator[Block]:
        """The output blocks, with the windows each owns (``tiles``) or none."""
        s = self.scene
        rows, cols = (self.row_offsets, self.col_offsets) if tiles else ((), ())
        return iter_blocks(
            s.height, s.width, self.config.block_px, rows, cols, self.window_px, s.transform
        )


@dataclass(slots=True)
class _Scored:
    """What the model pass leaves: the lattice sums and window counts."""

    cells: CellGrid
    scored: int
    skipped: int


@dataclass(slots=True)
class _Rasters:
    """What pass 2 leaves: each class's polygon pieces, pixel counts, the heat work files."""

    scene_max: npt.NDArray[np.float32]
    pieces: list[list[Piece]]
    class_pixels: npt.NDArray[np.int64]
    class_area_m2: npt.NDArray[np.float64]
    heat_vrt: Path
    heat_files: list[Path]


def _run(job: _Job) -> Generator[Progress, None, tuple[dict[str, Any], SceneLayers]]:
    preview = PreviewGrid.for_scene(job.scene.shape_rc, job.config.preview_px)
    scored = yield from _model_pass(job, preview)
    rasters = yield from _raster_pass(job, scored.cells, preview)
    polygons, layers = _write_outputs(job, rasters, preview)
    for work in (job.work("valid"), job.work("cls"), *rasters.heat_files):
        work.unlink(missing_ok=True)
    record = _record(job, scored, rasters, polygons)
    record["out_dir"] = str(job.out_dir)
    record["preflight"] = {**asdict(job.estimate), "memory_mib": job.estimate.memory_mib}
    record["files"] = manifest(job.tmp, OUTPUT_NAMES.values())  # the completion marker's list
    write_json(record, job.tmp / OUTPUT_NAMES["run"])
    return record, layers


def _model_pass(job: _Job, preview: PreviewGrid) -> Generator[Progress, None, _Scored]:
    """Pass 1: score every window, sum its CAM on the scene's lattice, keep the validity mask."""
    scene, card, config, engine, timer = (
        job.scene,
        job.model.card,
        job.config,
        job.engine,
        job.timer,
    )
    total_windows = len(job.row_offsets) * len(job.col_offsets)
    cells: CellGrid | None = None
    scored = skipped = done = 0
    yield Progress(scene.name, "windows", 0, total_windows)  # a stage starts with done=0
    t = time.perf_counter()
    with (
        SceneReader(scene, job.bands.indexes) as reader,
        TiledWriter(
            job.work("valid"), 1, "uint8", nodata=None, profile="work-halo-tiff", **job.grid
        ) as valid_out,
        ExitStack() as stack,  # last in, first out: I/O threads stop before files close
    ):
        context_px = getattr(engine, "context_px", 0)
        min_valid = max(config.min_valid_fraction, 1e-9)

        def keep_rgb(
            block: Block, region: Window, dn: npt.NDArray[np.float32], valid: npt.NDArray[np.bool_]
        ) -> None:
            """Keep the preview's true colour from the model's own reads."""
            r, c = int(block.window.row_off), int(block.window.col_off)
            part = (
                slice(r - int(region.row_off), r - int(region.row_off) + int(block.window.height)),
                slice(c - int(region.col_off), c - int(region.col_off) + int(block.window.width)),
            )
            preview.add_rgb((r, c), dn[(rgb_bands, *part)], valid[part])

        rgb_bands = [card.bands.index(b) for b in TRUE_COLOUR if b in card.bands]
        on_read = keep_rgb if config.preview and len(rgb_bands) == len(TRUE_COLOUR) else None

        def prepare(block: Block) -> _Prepared:
            return _prepare(
                block, reader, card, job.radiometry, job.window_px, context_px, min_valid, on_read
            )

        # Read and render the next block while the model scores this one (one block in flight:
        # memory stays bounded by the block). One thread: rasterio datasets must not be used
        # from two threads at once.
        reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geocam-read")
        stack.callback(reads.shutdown, cancel_futures=True)
        _start(reads)
        for prepared in _ahead(job.blocks(), prepare, reads):
            block, region, valid = prepared.block, prepared.region, prepared.valid
            t = timer.add("read", t)
            rr, rc = int(region.row_off), int(region.col_off)
            skipped += len(block.tiles) - len(prepared.todo)
            done += len(block.tiles) - len(prepared.todo)
            if prepared.todo:
                assert prepared.image is not None
                origins = [(tile.row_off - rr, tile.col_off - rc) for tile in prepared.todo]
                k = 0
                for scores in engine.score(prepared.image, origins, job.window_px):
                    t = timer.add("model", t)
                    _check_finite(scores.cams, scores.probs, job.model, scene.name)
                    if cells is None:
                        cells_rc = (scores.cams.shape[-2], scores.cams.shape[-1])
                        cells = CellGrid(len(card.classes), job.row_offsets, job.col_offsets,
                                         job.window_px, cells_rc, job.stride_px)  # fmt: skip
                    batch = prepared.todo[k : k + len(scores.probs)]
                    cells.add(scores.cams, scores.probs, [(s.row_off, s.col_off) for s in batch])
                    k += len(batch)
                    scored += len(batch)
                    done += len(batch)
                    t = timer.add("stitch", t)
                    yield Progress(scene.name, "windows", done, total_windows)
                    t = time.perf_counter()
            else:
                yield Progress(scene.name, "windows", done, total_windows)
            b_r0, b_c0 = int(block.window.row_off), int(block.window.col_off)
            b_rows, b_cols = int(block.window.height), int(block.window.width)
            block_valid = valid[b_r0 - rr : b_r0 - rr + b_rows, b_c0 - rc : b_c0 - rc + b_cols]
            valid_out.write(block.window, block_valid[None].astype(np.uint8))
            t = timer.add("write", t)
            del prepared, valid
    if cells is None or scored == 0:
        raise SceneError(
            f"scene {scene.name!r} has no window with >= {config.min_valid_fraction:.0%} valid "
            f"pixels (nodata={scene.nodata}, {scene.nodata_source}); it is all nodata - check "
            "the file or pass --nodata / --min-valid"
        )
    return _Scored(cells, scored, skipped)


def _check_finite(
    cams: npt.NDArray[np.float32],
    probs: npt.NDArray[np.float32],
    model: GeocamModel,
    scene: str,
) -> None:
    """Refuse NaN or infinite model outputs (broken weights, an overflow in low precision)."""
    if np.isfinite(cams).all() and np.isfinite(probs).all():
        return
    bad = int((~np.isfinite(cams).reshape(len(cams), -1).all(axis=1)).sum())
    raise ModelFormatError(
        f"`model` (sha256 {model.sha256[:12]}) gives NaN or infinite CAMs for {bad} of "
        f"{len(cams)} windows of scene {scene!r}; its weights are broken or overflow: try "
        "--precision fp32, or export the model again"
    )


def _raster_pass(
    job: _Job, cells: CellGrid, preview: PreviewGrid
) -> Generator[Progress, None, _Rasters]:
    """Pass 2: per-pixel heat and classes from the lattice, normalised once; polygon pieces."""
    scene, config, timer, names = job.scene, job.config, job.timer, job.names
    n_classes = len(names)
    n_blocks = -(-scene.height // config.block_px) * -(-scene.width // config.block_px)
    yield Progress(scene.name, "blocks", 0, n_blocks)
    scene_max = cells.scene_max()
    provenance = job.provenance
    heat_tags = {
        "CAM_NORMALISATION": "relu(cam) / scene max of relu(cam) per class",
        **provenance.tiff_tags(f"geocam CAM heat of {scene.name}, one band per class, 0-1"),
    }
    colormap = {i: (*c, 255) for i, c in enumerate(class_colours(names))}
    colormap[NO_CLASS] = (0, 0, 0, 0)
    cls_tags = {
        "CLASS_NAMES": ",".join(names),
        **{f"CLASS_{i}": n for i, n in enumerate(names)},
        **provenance.tiff_tags(f"geocam winning class of {scene.name}, {NO_CLASS} = nodata"),
    }
    halo = config.sieve_px
    pieces: list[list[Piece]] = [[] for _ in range(n_classes)]
    # Pixels per class (the last column: nodata) in each scene row, for areas by latitude.
    class_rows = np.zeros((scene.height, n_classes + 1), dtype=np.int64)
    with (
        PyramidWriter(
            job.work("heat"), n_classes, block_px=config.block_px, descriptions=names,
            tags=heat_tags, overviews=config.overviews, **job.grid,
        ) as heat_out,
        TiledWriter(
            job.work("cls"), 1, "uint8", nodata=NO_CLASS, colormap=colormap, tags=cls_tags,
            **job.grid,
        ) as cls_out,
        rasterio.open(job.work("valid")) as valid_in,
        ExitStack() as stack,
    ):  # fmt: skip
        for i in range(n_classes):
            heat_out.update_band_tags(
                i + 1, CLASS=names[i], CAM_SCENE_MAX=f"{float(scene_max[i]):.6g}"
            )
        # Each finished block is compressed and written in the background while the next one
        # is rendered and polygonised.
        writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geocam-write")
        stack.callback(writes.shutdown, cancel_futures=True)
        _start(writes)
        pending_write: Future[None] | None = None

        def with_valid(blocks: Iterator[Block]) -> Iterator[tuple[Block, npt.NDArray[np.bool_]]]:
            # Read in the consuming (main) thread: one rasterio dataset, one thread.
            for block in blocks:
                r0, c0 = int(block.window.row_off), int(block.window.col_off)
                h, w = int(block.window.height), int(block.window.width)
                halo_win = Window(c0 - halo, r0 - halo, w + 2 * halo, h + 2 * halo)
                yield block, read_window(valid_in, halo_win, boundless_fill=0)[0] > 0

        def finish(item: tuple[Block, npt.NDArray[np.bool_]]) -> tuple[Block, _Finished]:
            # GDAL settings are per thread; without one, each sieve and shapes call makes one.
            with rasterio.Env(**dict(config.gdal_env)):
                return item[0], _finish_block(
                    item[0], item[1], cells, scene_max, job.engine.bias, config
                )

        # Blocks are rendered and polygonised on all threads the model used (numpy, scipy and
        # GDAL release the GIL), taken in order; each is written in the background. One block
        # fewer than the threads is computed ahead of the one in hand (as fast as one more, on
        # 2 cores, and a block less in memory). BLAS runs one thread per call: its threads on
        # the small render products only contend (4000 x 4000 scene, 2 cores: pass 2 4.4 s
        # serial, 4.8 s with BLAS threads, 3.4 s without).
        workers = max(1, torch.get_num_threads())
        stack.enter_context(threadpool_limits(limits=1, user_api="blas"))
        # rasterio's in-memory datasets (sieve, shapes) silence this warning with
        # warnings.catch_warnings, which is not thread-safe: from two threads it leaks out.
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
        finishing = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="geocam-finish")
        stack.callback(finishing.shutdown, cancel_futures=True)
        t_pass2 = time.perf_counter()
        finished = _ahead(
            with_valid(job.blocks(tiles=False)), finish, finishing, depth=max(1, workers - 1)
        )
        for b, (block, done_block) in enumerate(finished):
            window = block.window
            r0, rows_px = int(window.row_off), done_block.cls.shape[0]
            index = np.where(done_block.cls == NO_CLASS, n_classes, done_block.cls).astype(np.intp)
            index += (n_classes + 1) * np.arange(rows_px, dtype=np.intp)[:, None]
            class_rows[r0 : r0 + rows_px] += np.bincount(
                index.ravel(), minlength=rows_px * (n_classes + 1)
            ).reshape(rows_px, n_classes + 1)
            if pending_write is not None:
                pending_write.result()  # the previous block's write (re-raises its error)
            pending_write = writes.submit(
                _write_block, window, done_block.heat, done_block.cls, heat_out, cls_out
            )
            if config.preview:
                preview.add((int(window.row_off), int(window.col_off)), done_block.cls,
                            done_block.heat)  # fmt: skip
            for c in range(n_classes):
                pieces[c].extend(done_block.pieces[c])
            for key, seconds in done_block.seconds.items():
                timer.seconds[key] = timer.seconds.get(key, 0.0) + seconds
            yield Progress(scene.name, "blocks", b + 1, n_blocks)
        if pending_write is not None:
            pending_write.result()
        timer.add("pass2", t_pass2)
    heat_files = [job.work("heat"), *(level.path for level in heat_out.levels)]
    class_area_m2 = row_areas_m2(scene.transform, scene.crs, scene.height) @ class_rows
    return _Rasters(
        scene_max, pieces, class_rows.sum(axis=0), class_area_m2, heat_out.vrt(), heat_files
    )


def _write_outputs(
    job: _Job, rasters: _Rasters, preview: PreviewGrid
) -> tuple[list[SalientPolygon], SceneLayers]:
    """Write the COGs, the polygons, the preview and the QGIS styles and project.

    Returns:
        The polygons, and what the project shows.

    The COGs (GDAL, multi-threaded, without the GIL) are written in the background while the
    polygons merge and the vectors and preview are written.
    """
    scene, config, timer, names, tmp = job.scene, job.config, job.timer, job.names, job.tmp
    provenance, colours = job.provenance, class_colours(names)
    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="geocam-cog") as cog_thread:
        cogs = cog_thread.submit(
            _write_cogs, rasters.heat_vrt, job.work("cls"), tmp, names, config.overviews,
            config.gdal_env,
        )  # fmt: skip
        tolerance = config.simplify_px * min(scene.res_xy)
        polygons: list[SalientPolygon] = []
        for c, class_pieces in enumerate(rasters.pieces):
            polygons.extend(merge_pieces(class_pieces, c, names[c], scene.crs, tolerance))
        rasters.pieces.clear()
        allocator.trim()  # the pieces' memory, scattered through the heap
        t = timer.add("merge", t)
        frame = polygons_frame(polygons, scene.crs)
        polygon_style = salient_qml(names, colours)
        write_gpkg(
            frame, tmp / OUTPUT_NAMES["gpkg"], metadata=provenance.items(),
            description=f"geocam salient polygons of {scene.name} ({provenance.summary()})",
            style_qml=polygon_style, date=provenance.gpkg_date,
        )  # fmt: skip
        write_geojson(frame, tmp / OUTPUT_NAMES["geojson"])
        del frame
        allocator.trim()
        t = timer.add("vectors", t)
        preview_extent = None
        if config.preview:
            path = tmp / OUTPUT_NAMES["preview"]
            preview_extent = write_scene_preview(
                path, scene, job.bands, job.model, job.radiometry, preview
            )
            t = timer.add("preview", t)
        layers = _scene_layers(job, rasters, preview_extent)
        write_text(tmp / OUTPUT_NAMES["classes_style"], classes_qml(names, colours))
        write_text(tmp / OUTPUT_NAMES["cam_style"], cam_qml(layers.heat_band))
        write_text(tmp / OUTPUT_NAMES["salient_style"], polygon_style)
        project = project_xml(
            [layers], title=f"geocam: {scene.name}",
            created=provenance.iso_date.rstrip("Z"), abstract=provenance.summary(),
        )  # fmt: skip
        write_text(tmp / OUTPUT_NAMES["project"], project)
        timer.seconds["cog"] = cogs.result()  # in the background; the wait is "cog_wait"
        timer.add("cog_wait", t)
    return polygons, layers


def _scene_layers(
    job: _Job, rasters: _Rasters, preview_extent: tuple[float, float, float, float] | None
) -> SceneLayers:
    """What the project shows: the heat of the class covering most of the scene, ticked."""
    scene, names = job.scene, job.names
    counts = rasters.class_pixels[: len(names)]
    epsg = scene.crs.to_epsg()
    return SceneLayers(
        name=scene.name,
        folder=".",
        crs_wkt=scene.crs.to_wkt(),
        crs_authid=f"EPSG:{epsg}" if epsg else None,
        extent=array_bounds(*scene.shape_rc, scene.transform),  # (west, south, east, north)
        classes=tuple(names),
        colours=tuple(class_colours(names)),
        heat_band=int(np.argmax(counts)) + 1 if counts.any() else 1,
        preview=OUTPUT_NAMES["preview"] if preview_extent is not None else None,
        preview_extent=preview_extent,
    )


def _record(
    job: _Job, scored: _Scored, rasters: _Rasters, polygons: Sequence[SalientPolygon]
) -> dict[str, Any]:
    """The run's record (run.json): inputs, parameters, counts, timings."""
    scene, model, card, bands, config = job.scene, job.model, job.model.card, job.bands, job.config
    engine, timer, names = job.engine, job.timer, job.names
    model_s = timer.seconds.get("model", 0.0)
    class_pixels = rasters.class_pixels
    valid_px = int(class_pixels[: len(names)].sum())
    record: dict[str, Any] = {
        "geocam": _versions()["geocam"],
        "scene": {
            "name": scene.name,
            "paths": [str(p) for p in scene.paths],
            "crs": scene.crs.to_string(),
            "transform": list(scene.transform)[:6],
            "shape_rc": list(scene.shape_rc),
            "band_names": list(scene.band_names),
            "bands_used": {
                card.bands[i]: {"scene_band": pos + 1, "name": scene.bands[pos].name}
                for i, pos in enumerate(bands.indexes)
            },
            "band_match": bands.how,
            "nodata": scene.nodata,
            "nodata_source": scene.nodata_source,
            "dn_offset": scene.dn_offset,
            "dn_offset_source": scene.dn_offset_source,
            "radiometry": asdict(job.radiometry),
            "ground": asdict(job.ground),
        },
        "model": {
            "sha256": model.sha256,
            "architecture": card.architecture,
            "classes": names,
            "bands": list(card.bands),
            "rendering": asdict(card.rendering),
            "window_px": card.window_px,
            "input_scale": card.input_scale,
            "metrics": dict(card.metrics),
        },
        "parameters": {
            **to_mapping(config),
            "window_px": job.window_px,
            "stride_px": job.stride_px,
            "engine": engine.name,
            "device": str(getattr(engine, "device", config.device)),
            "precision": getattr(engine, "precision", config.precision),
            "threads": torch.get_num_threads(),
        },
        "windows": {
            "total": len(job.row_offsets) * len(job.col_offsets),
            "scored": scored.scored,
            "skipped_nodata": scored.skipped,
            "per_second_model": round(scored.scored / model_s, 2) if model_s > 0 else None,
            "lattice_px": scored.cells.lattice_px,
        },
        "blocks": -(-scene.height // config.block_px) * -(-scene.width // config.block_px),
        "scene_max_cam": {n: float(rasters.scene_max[i]) for i, n in enumerate(names)},
        "class_fraction": {
            n: round(float(class_pixels[i]) / max(valid_px, 1), 4) for i, n in enumerate(names)
        },
        "class_area_m2": {
            n: round(float(rasters.class_area_m2[i]), 1) for i, n in enumerate(names)
        },
        "polygons": {
            "total": len(polygons),
            "per_class": {n: sum(p.class_id == i for p in polygons) for i, n in enumerate(names)},
            "area_m2_per_class": {
                n: round(sum((p.area_m2 for p in polygons if p.class_id == i), 0.0), 1)
                for i, n in enumerate(names)
            },
            "rule": (
                f"relu(cam)/scene max >= {config.threshold} and (class wins or probability >= "
                f"{config.min_probability}); sieve {config.sieve_px} px; simplify "
                f"{config.simplify_px} px"
            ),
        },
        "timings_s": {k: round(v, 3) for k, v in timer.seconds.items()},
        "versions": _versions(),
        "provenance": job.provenance.items(),
        "outputs": [n for k, n in OUTPUT_NAMES.items() if (job.tmp / n).exists() or k == "run"],
    }
    record["timings_s"].setdefault("model", 0.0)
    record["timings_s"]["total"] = round(time.perf_counter() - timer.start, 3)
    record["timings_s"]["load_model"] = round(model.load_s, 3)
    record["peak_rss_mib"] = peak_rss_mib()
    return record


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
                    name, ", ".join(map(str, paths)), folder,
                )  # fmt: skip
    inputs = [p for _, paths in scenes for p in paths]
    check_inputs_outside(inputs, folders, OUTPUT_NAMES.values())
    for (name, paths), folder in zip(scenes, folders, strict=True):
        preflight.check_scene(paths, card, config, folder, name)
    return folders


def iter_scene_inputs(paths: Sequence[Path]) -> Iterator[tuple[str, tuple[Path, ...]]]:
    """Scenes named by command-line inputs (see :func:`geocam.scene.group_inputs`)."""
    from .scene import group_inputs

    yield from group_inputs(paths)
