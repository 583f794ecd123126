"""Pass 1: score every window block by block and sum its CAM into the scene's lattice.

For each output block, the pixels its windows need (block plus halo, windowed) are read and
rendered in a background thread while the engine scores the previous block; each window's raw
CAM and probabilities go into the scene's stitching lattice (:class:`~geocam.stitch.CellGrid`,
half a feature cell per lattice cell), and the block's validity mask into a work GeoTIFF.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from rasterio.windows import Window

from ..errors import ModelFormatError, SceneError
from ..io.raster import TiledWriter
from ..io.reader import SceneReader
from ..model import GeocamModel, ModelCard
from ..preview import TRUE_COLOUR, PreviewGrid
from ..radiometry import Radiometry
from ..render import render
from ..stitch import CellGrid
from ..tiling import Block, Tile
from .executor import ahead, start_worker
from .job import Job, Progress

log = logging.getLogger(__name__)

#: Sees a block's region as it is read: (block, region, DNs, valid mask).
OnRead = Callable[[Block, Window, npt.NDArray[np.float32], npt.NDArray[np.bool_]], None]


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
class Prepared:
    """A block's pixels, read and rendered ahead of the model."""

    block: Block
    region: Window
    valid: npt.NDArray[np.bool_]
    todo: list[Tile]
    image: npt.NDArray[np.float32] | None


def prepare_block(
    block: Block,
    reader: SceneReader,
    card: ModelCard,
    radiometry: Radiometry,
    window_px: int,
    context_px: int,
    min_valid: float,
    on_read: OnRead | None = None,
) -> Prepared:
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
    return Prepared(block, region, valid, todo, image)


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """The model pass's windows: scored, skipped as nodata, and the lattice they were summed on."""

    scored: int
    skipped: int
    lattice_px: int


@dataclass(slots=True)
class Scored:
    """What the model pass leaves: the lattice sums (for pass 2 only) and the window counts."""

    cells: CellGrid
    counts: WindowCounts


def _inside(block: Block, region: Window) -> tuple[slice, slice]:
    """The block's pixels within the region read for it."""
    r, c = int(block.window.row_off), int(block.window.col_off)
    r0, c0 = r - int(region.row_off), c - int(region.col_off)
    return slice(r0, r0 + int(block.window.height)), slice(c0, c0 + int(block.window.width))


def _rgb_keeper(card: ModelCard, preview: PreviewGrid) -> OnRead | None:
    """What keeps the preview's true colour from the model's own reads (None: no RGB bands)."""
    rgb_bands = [card.bands.index(b) for b in TRUE_COLOUR if b in card.bands]
    if len(rgb_bands) != len(TRUE_COLOUR):
        return None

    def keep_rgb(
        block: Block, region: Window, dn: npt.NDArray[np.float32], valid: npt.NDArray[np.bool_]
    ) -> None:
        part = _inside(block, region)
        origin = (int(block.window.row_off), int(block.window.col_off))
        preview.add_rgb(origin, dn[(rgb_bands, *part)], valid[part])

    return keep_rgb


def model_pass(job: Job, preview: PreviewGrid) -> Generator[Progress, None, Scored]:
    """Pass 1: score every window, sum its CAM on the scene's lattice, keep the validity mask."""
    scene, card, config = job.plan.scene, job.model.card, job.config
    engine, timer, plan = job.engine, job.timer, job.plan
    total_windows = len(job.plan.row_offsets) * len(job.plan.col_offsets)
    cells: CellGrid | None = None
    scored = skipped = done = 0
    job.hooks.model_pass()
    yield Progress(scene.name, "windows", 0, total_windows)  # a stage starts with done=0
    t = time.perf_counter()
    with (
        SceneReader(scene, job.plan.bands.indexes) as reader,
        TiledWriter(
            job.work("valid"), 1, "uint8", nodata=None, profile="work-halo-tiff", **job.grid
        ) as valid_out,
        ExitStack() as stack,  # last in, first out: I/O threads stop before files close
    ):
        min_valid = max(config.min_valid_fraction, 1e-9)
        on_read = _rgb_keeper(card, preview) if config.preview else None

        def prepare(block: Block) -> Prepared:
            return prepare_block(
                block, reader, card, job.radiometry, plan.window_px, engine.context_px, min_valid,
                on_read,
            )  # fmt: skip

        # Read and render the next block while the model scores this one (one block in flight:
        # memory stays bounded by the block). One thread: rasterio datasets must not be used
        # from two threads at once.
        reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geocam-read")
        stack.callback(reads.shutdown, cancel_futures=True)
        start_worker(reads)
        for prepared in ahead(job.blocks(), prepare, reads):
            block, region, valid = prepared.block, prepared.region, prepared.valid
            t = timer.add("read", t)
            rr, rc = int(region.row_off), int(region.col_off)
            skipped += len(block.tiles) - len(prepared.todo)
            done += len(block.tiles) - len(prepared.todo)
            if prepared.todo:
                assert prepared.image is not None
                origins = [(tile.row_off - rr, tile.col_off - rc) for tile in prepared.todo]
                k = 0
                for scores in engine.score(prepared.image, origins, plan.window_px):
                    t = timer.add("model", t)
                    _check_finite(scores.cams, scores.probs, job.model, scene.name)
                    if cells is None:  # the engine's CAM grid sets the lattice
                        cells_rc = (scores.cams.shape[-2], scores.cams.shape[-1])
                        cells = CellGrid(len(card.classes), plan.row_offsets, plan.col_offsets,
                                         plan.window_px, cells_rc, plan.stride_px)  # fmt: skip
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
            block_valid = valid[_inside(block, region)]
            valid_out.write(block.window, block_valid[None].astype(np.uint8))
            t = timer.add("write", t)
            del prepared, valid
    if cells is None or scored == 0:
        raise SceneError(
            f"scene {scene.name!r} has no window with >= {config.min_valid_fraction:.0%} valid "
            f"pixels (nodata={scene.nodata}, {scene.nodata_source}); it is all nodata - check "
            "the file or pass --nodata / --min-valid"
        )
    log.info(
        "scene %s pass 1: %d windows scored, %d skipped as nodata; model %.2f s, reads %.2f s",
        scene.name,
        scored,
        skipped,
        timer.seconds.get("model", 0.0),
        timer.seconds.get("read", 0.0),
    )
    return Scored(cells, WindowCounts(scored, skipped, cells.lattice_px))


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
