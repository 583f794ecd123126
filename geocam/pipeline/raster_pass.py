"""Pass 2: per-pixel heat, classes and polygon pieces from the lattice, block by block.

Each block (with a halo for sieving) is rendered from the lattice, normalised once per scene,
written to work GeoTIFFs in a background thread, and polygonised; blocks run on the threads the
model used.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import rasterio
import torch
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window
from threadpoolctl import threadpool_limits

from ..colours import class_colours
from ..config import SceneConfig
from ..io.pyramid import PyramidWriter
from ..io.raster import TiledWriter, read_window
from ..polygonize import (
    Piece,
    block_pieces,
    row_areas_m2,
    salient_mask,
    sieve_mask,
)
from ..preview import PreviewGrid
from ..stitch import NO_CLASS, CellGrid, class_map, normalise
from ..tiling import Block
from .executor import ahead, start_worker
from .job import Job, Progress

log = logging.getLogger(__name__)


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


@dataclass(slots=True)
class Rasters:
    """What pass 2 leaves: each class's polygon pieces, pixel counts, the heat work files."""

    scene_max: npt.NDArray[np.float32]
    pieces: list[list[Piece]]
    class_pixels: npt.NDArray[np.int64]
    class_area_m2: npt.NDArray[np.float64]
    heat_vrt: Path
    heat_files: list[Path]


def _heat_writer(job: Job) -> PyramidWriter:
    """The heat work file (one float32 band per class) and its overview pyramid."""
    scene, names = job.plan.scene, job.names
    tags = {
        "CAM_NORMALISATION": "relu(cam) / scene max of relu(cam) per class",
        **job.provenance.tiff_tags(f"geocam CAM heat of {scene.name}, one band per class, 0-1"),
    }
    return PyramidWriter(
        job.work("heat"),
        len(names),
        block_px=job.config.block_px,
        descriptions=names,
        tags=tags,
        overviews=job.config.overviews,
        **job.grid,
    )


def _class_writer(job: Job) -> TiledWriter:
    """The class map work file (uint8, colour table, ``NO_CLASS`` = nodata)."""
    scene, names = job.plan.scene, job.names
    colormap = {i: (*c, 255) for i, c in enumerate(class_colours(names))}
    colormap[NO_CLASS] = (0, 0, 0, 0)
    tags = {
        "CLASS_NAMES": ",".join(names),
        **{f"CLASS_{i}": n for i, n in enumerate(names)},
        **job.provenance.tiff_tags(f"geocam winning class of {scene.name}, {NO_CLASS} = nodata"),
    }
    return TiledWriter(
        job.work("cls"), 1, "uint8", nodata=NO_CLASS, colormap=colormap, tags=tags, **job.grid
    )


def _count_class_rows(
    class_rows: npt.NDArray[np.int64], r0: int, cls: npt.NDArray[np.uint8]
) -> None:
    """Add a block's pixels per class (last column: nodata) to the scene rows from ``r0`` on."""
    rows_px, n_columns = cls.shape[0], class_rows.shape[1]
    index = np.where(cls == NO_CLASS, n_columns - 1, cls).astype(np.intp)
    index += n_columns * np.arange(rows_px, dtype=np.intp)[:, None]
    class_rows[r0 : r0 + rows_px] += np.bincount(
        index.ravel(), minlength=rows_px * n_columns
    ).reshape(rows_px, n_columns)


def raster_pass(
    job: Job, cells: CellGrid, preview: PreviewGrid
) -> Generator[Progress, None, Rasters]:
    """Pass 2: per-pixel heat and classes from the lattice, normalised once; polygon pieces."""
    scene, config, timer, names = job.plan.scene, job.config, job.timer, job.names
    n_classes = len(names)
    n_blocks = -(-scene.height // config.block_px) * -(-scene.width // config.block_px)
    job.hooks.raster_pass()
    yield Progress(scene.name, "blocks", 0, n_blocks)
    scene_max = cells.scene_max()
    halo = config.sieve_px
    pieces: list[list[Piece]] = [[] for _ in range(n_classes)]
    # Pixels per class (the last column: nodata) in each scene row, for areas by latitude.
    class_rows = np.zeros((scene.height, n_classes + 1), dtype=np.int64)
    with (
        _heat_writer(job) as heat_out,
        _class_writer(job) as cls_out,
        rasterio.open(job.work("valid")) as valid_in,
        ExitStack() as stack,
    ):
        for i in range(n_classes):
            heat_out.update_band_tags(
                i + 1, CLASS=names[i], CAM_SCENE_MAX=f"{float(scene_max[i]):.6g}"
            )
        # Each finished block is compressed and written in the background while the next one
        # is rendered and polygonised.
        writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geocam-write")
        stack.callback(writes.shutdown, cancel_futures=True)
        start_worker(writes)
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
        # fewer than the threads is computed ahead of the one in hand (as fast as one more, and
        # a block less in memory). BLAS runs one thread per call (scoped): its threads on the
        # small render products only contend with the block threads.
        workers = max(1, torch.get_num_threads())
        stack.enter_context(threadpool_limits(limits=1, user_api="blas"))
        # rasterio's in-memory datasets (sieve, shapes) silence this warning with
        # warnings.catch_warnings, which is not thread-safe: from two threads it leaks out.
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
        finishing = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="geocam-finish")
        stack.callback(finishing.shutdown, cancel_futures=True)
        t_pass2 = time.perf_counter()
        finished = ahead(
            with_valid(job.blocks(tiles=False)), finish, finishing, depth=max(1, workers - 1)
        )
        for b, (block, done_block) in enumerate(finished):
            window = block.window
            _count_class_rows(class_rows, int(window.row_off), done_block.cls)
            if pending_write is not None:
                pending_write.result()  # the previous block's write (re-raises its error)
            pending_write = writes.submit(
                _write_block, window, done_block.heat, done_block.cls, heat_out, cls_out
            )
            if config.preview:
                preview.add(
                    (int(window.row_off), int(window.col_off)), done_block.cls, done_block.heat
                )
            for c in range(n_classes):
                pieces[c].extend(done_block.pieces[c])
            for key, seconds in done_block.seconds.items():
                timer.seconds[key] = timer.seconds.get(key, 0.0) + seconds
            if b + 1 == n_blocks:
                # Written before the last event, a safe point for a signal noted meanwhile.
                pending_write.result()
            yield Progress(scene.name, "blocks", b + 1, n_blocks)
        if pending_write is not None:
            pending_write.result()
        timer.add("pass2", t_pass2)
    log.info(
        "scene %s pass 2: %d blocks rendered and polygonised in %.2f s",
        scene.name,
        n_blocks,
        timer.seconds["pass2"],
    )
    heat_files = [job.work("heat"), *(level.path for level in heat_out.levels)]
    class_area_m2 = row_areas_m2(scene.transform, scene.crs, scene.height) @ class_rows
    return Rasters(
        scene_max, pieces, class_rows.sum(axis=0), class_area_m2, heat_out.vrt(), heat_files
    )
