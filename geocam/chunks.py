"""One big scene over Dask: pass 1 (the model) in chunks of whole blocks on the workers.

``--chunk-px N`` (a multiple of ``--block-px``) splits the scene into chunks of N x N pixels,
their origins on the block grid. A chunk task scores the windows its blocks own exactly as the
model pass of :func:`geocam.pipeline.iter_run_scene` does: each block's region (the block and
the extent of its windows: the halo of window - stride) read with rasterio in one call,
rendered, its windows with enough valid pixels scored in the same batches. It returns the
batches' scores (for a full 10980 x 10980 tile, 117,649 windows of 10 classes and 2 x 2 CAM
cells: about 24 MB), not a lattice: the client replays them into the scene's lattice once, in
the local run's order (:class:`ReplayEngine`), so the float32 sums, the scene-wide
normalisation and everything after them are a local run's, byte for byte. Pass 2 (rendering,
polygons) and the writing then run on the client, as in a local run.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import rasterio
import torch

from .batch import SceneJob
from .cam import Engine, WindowScores, make_engine
from .config import Precision, SceneConfig
from .errors import ConfigError
from .io.reader import SceneReader
from .io.scene import open_scene
from .model import GeocamModel
from .pipeline.model_pass import prepare_block
from .pipeline.plan import plan_grid
from .runtime import resolve_precision, torch_device, torch_threads
from .tiling import iter_blocks

BlockIndex = tuple[int, int]


@dataclass(frozen=True, slots=True)
class ChunkScores:
    """What a chunk task returns.

    Attributes:
        blocks: block index (row, col) to the scores of its windows, batch by batch (only
            blocks with windows to score).
        windows: windows scored.
    """

    blocks: dict[BlockIndex, list[WindowScores]]
    windows: int


def check_chunk_px(chunk_px: int, block_px: int) -> None:
    """Refuse a chunk edge that is not a positive multiple of the block edge.

    Args:
        chunk_px: chunk edge in pixels.
        block_px: output block edge in pixels.

    Raises:
        ConfigError: ``chunk_px`` is not a positive multiple of ``block_px``.
    """
    if chunk_px < block_px or chunk_px % block_px:
        raise ConfigError(
            f"`chunk_px`={chunk_px} is not a multiple of `block_px`={block_px}; chunks are made "
            f"of whole blocks: use e.g. {max(1, round(chunk_px / block_px)) * block_px}"
        )


def chunk_blocks(shape_rc: tuple[int, int], block_px: int, chunk_px: int) -> list[list[BlockIndex]]:
    """The blocks of each chunk, chunks and blocks row-major.

    Args:
        shape_rc: scene (rows, cols) in pixels.
        block_px: output block edge in pixels.
        chunk_px: chunk edge in pixels, a multiple of ``block_px``.

    Raises:
        ConfigError: ``chunk_px`` is not a positive multiple of ``block_px``.
    """
    check_chunk_px(chunk_px, block_px)
    per = chunk_px // block_px
    n_rows, n_cols = math.ceil(shape_rc[0] / block_px), math.ceil(shape_rc[1] / block_px)
    return [
        [
            (bi, bj)
            for bi in range(ci, min(ci + per, n_rows))
            for bj in range(cj, min(cj + per, n_cols))
        ]
        for ci in range(0, n_rows, per)
        for cj in range(0, n_cols, per)
    ]


def scene_shape(job: SceneJob, config: SceneConfig) -> tuple[int, int]:
    """The scene's (rows, cols) in pixels."""
    return open_scene(
        job.paths, name=job.name, nodata=config.nodata, dn_offset=config.dn_offset
    ).shape_rc


def score_chunk(
    job: SceneJob, model: GeocamModel, config: SceneConfig, blocks: Sequence[BlockIndex]
) -> ChunkScores:
    """Score the windows of some blocks of a scene, as a local run's model pass does.

    Args:
        job: the scene.
        model: the loaded model.
        config: run settings (those of the local run to match).
        blocks: the chunk's block indexes (row, col).
    """
    card = model.card
    device = torch_device(config.device)
    precision = resolve_precision(config.precision, device)
    plan = plan_grid(job.paths, card, config, job.name)
    scene, window_px, radiometry = plan.scene, plan.window_px, plan.radiometry
    assert radiometry is not None
    engine = make_engine(
        config.mode, model.net, config.batch_size, device, precision, plan.ground.input_scale
    )
    context_px = engine.context_px
    min_valid = max(config.min_valid_fraction, 1e-9)
    wanted, out, windows = set(blocks), {}, 0
    with (
        torch_threads(config.threads or os.cpu_count() or 1),
        rasterio.Env(**dict(config.gdal_env)),
        SceneReader(scene, plan.bands.indexes) as reader,
    ):
        for block in iter_blocks(
            scene.height,
            scene.width,
            config.block_px,
            plan.row_offsets,
            plan.col_offsets,
            window_px,
            scene.transform,
        ):
            if block.index_rc not in wanted:
                continue
            prepared = prepare_block(
                block, reader, card, radiometry, window_px, context_px, min_valid
            )
            if not prepared.todo:
                continue
            assert prepared.image is not None
            rr, rc = int(prepared.region.row_off), int(prepared.region.col_off)
            origins = [(t.row_off - rr, t.col_off - rc) for t in prepared.todo]
            out[block.index_rc] = list(engine.score(prepared.image, origins, window_px))
            windows += len(origins)
    return ChunkScores(out, windows)


class ReplayEngine:
    """An engine that hands back scores computed elsewhere, block after block, in order.

    Stands for the engine a run built (its ``bias``, ``name``, ``device``... are the run's) and
    answers each block's ``score`` call with that block's stored batches.

    Args:
        engine: the run's engine.
        chunks: every chunk's scores.
    """

    def __init__(self, engine: Engine, chunks: Sequence[ChunkScores]) -> None:
        merged: dict[BlockIndex, list[WindowScores]] = {}
        for chunk in chunks:
            merged.update(chunk.blocks)
        self._queue: deque[list[WindowScores]] = deque(merged[k] for k in sorted(merged))
        self.name: str = engine.name
        self.bias: npt.NDArray[np.float32] = engine.bias
        self.device: torch.device = engine.device
        self.precision: Precision = engine.precision
        self.context_px: int = engine.context_px

    def score(
        self, image: npt.NDArray[np.float32], origins_rc: Sequence[tuple[int, int]], window_px: int
    ) -> Iterator[WindowScores]:
        """The next block's stored batches (``image`` is not used).

        Raises:
            RuntimeError: the stored batches do not hold this block's windows.
        """
        batches = self._queue.popleft() if self._queue else []
        if sum(len(b.probs) for b in batches) != len(origins_rc):
            raise RuntimeError(
                f"chunk scores hold {sum(len(b.probs) for b in batches)} windows for a block "
                f"with {len(origins_rc)}: the chunks were scored with other settings"
            )
        yield from batches
