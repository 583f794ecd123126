"""Window grids over a scene: pure generation of frozen :class:`Tile` values (size/stride in px).

Two layouts are offered:

``"torchgeo"``
    Exactly torchgeo 0.10's ``GriddedPatchSampler`` with ``units=Units.PIXELS``: per axis
    ``n = ceil((length - size) / stride) + 1`` windows, the grid (span ``stride * (n - 1) + size``)
    is centred on the scene and snapped to the pixel grid with Python's ``round`` (half to even),
    measuring rows from the *bottom* edge as torchgeo does in map coordinates. Edge windows can
    therefore overhang the scene by less than half a stride; those pixels count as nodata.
``"inward"``
    The same number of windows starting at the top-left corner; the last row and column are
    shifted inward to end at the scene edge (torchgeo's deprecated ``GridGeoSampler``).

Both cover every pixel when ``stride_px <= size_px``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from affine import Affine
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from .config import Grid
from .errors import TilingError


@dataclass(frozen=True, slots=True)
class Tile:
    """A square window in the scene grid, with its georeferencing (STYLE C5).

    Attributes:
        window: pixel window in the scene grid; may start at a negative offset or end past the
            scene with the ``"torchgeo"`` layout.
        transform: affine transform of the window's pixel grid (scene transform shifted).
    """

    window: Window
    transform: Affine

    @property
    def row_off(self) -> int:
        """First row in the scene grid (may be negative)."""
        return int(self.window.row_off)

    @property
    def col_off(self) -> int:
        """First column in the scene grid (may be negative)."""
        return int(self.window.col_off)

    @property
    def size_px(self) -> int:
        """Window edge in pixels."""
        return int(self.window.height)


@dataclass(frozen=True, slots=True)
class Block:
    """An output block: the scene region stitched and written at once, plus the tiles it owns.

    A tile is owned by the block holding its origin (clamped to the scene), so every tile is
    scored exactly once; a tile can still contribute to the blocks right of and below its owner.

    Attributes:
        index_rc: (block row, block column).
        window: the block's pixel window in the scene grid (inside the scene).
        transform: affine transform of the block's pixel grid.
        tiles: tiles owned by this block, row-major.
    """

    index_rc: tuple[int, int]
    window: Window
    transform: Affine
    tiles: tuple[Tile, ...]


def window_count(length_px: int, size_px: int, stride_px: int) -> int:
    """Windows along one axis: ``ceil((length - size) / stride) + 1`` (torchgeo's formula)."""
    return math.ceil((length_px - size_px) / stride_px) + 1


def check_grid(height: int, width: int, size_px: int, stride_px: int) -> None:
    """Validate a window grid request.

    Args:
        height: scene rows.
        width: scene columns.
        size_px: window edge in pixels.
        stride_px: step between window origins in pixels.

    Raises:
        TilingError: non-positive sizes, a stride larger than the window, or a scene smaller
            than one window.
    """
    if size_px < 1 or stride_px < 1:
        raise TilingError(
            f"`size_px`={size_px} and `stride_px`={stride_px} must both be positive integers"
        )
    if stride_px > size_px:
        raise TilingError(
            f"`stride_px`={stride_px} exceeds `size_px`={size_px}; gaps would be left unscored: "
            "use a stride <= the window size"
        )
    if height < size_px or width < size_px:
        raise TilingError(
            f"scene of {height} x {width} px (rows x cols) is smaller than one window "
            f"(`window_px`={size_px}); use a larger scene or a smaller --window-px"
        )


def axis_offsets(
    length_px: int, size_px: int, stride_px: int, grid: Grid = "torchgeo", from_end: bool = False
) -> tuple[int, ...]:
    """Window start offsets along one axis, ascending.

    Args:
        length_px: axis length in pixels.
        size_px: window edge in pixels.
        stride_px: step between windows in pixels.
        grid: ``"torchgeo"`` or ``"inward"`` (see the module docstring).
        from_end: measure torchgeo's snapping from the far end of the axis (True for rows,
            because torchgeo snaps the bottom edge in map coordinates).

    Returns:
        Offsets in pixels from the start of the axis (top or left).
    """
    n = window_count(length_px, size_px, stride_px)
    if grid == "inward":
        last = length_px - size_px
        return tuple(min(i * stride_px, last) for i in range(n))
    overhang = stride_px * (n - 1) + size_px - length_px
    start = round(-overhang / 2)  # torchgeo: round((xmin - bounds.xmin) / res)
    if not from_end:
        return tuple(start + i * stride_px for i in range(n))
    return tuple(sorted(length_px - size_px - start - i * stride_px for i in range(n)))


def grid_offsets(
    height: int, width: int, size_px: int, stride_px: int, grid: Grid = "torchgeo"
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Row and column offsets of the window grid.

    Args:
        height: scene rows.
        width: scene columns.
        size_px: window edge in pixels.
        stride_px: step between window origins in pixels; must be <= ``size_px``.
        grid: ``"torchgeo"`` or ``"inward"``.

    Returns:
        (row offsets, column offsets), each ascending.

    Raises:
        TilingError: see :func:`check_grid`.
    """
    check_grid(height, width, size_px, stride_px)
    rows = axis_offsets(height, size_px, stride_px, grid, from_end=True)
    cols = axis_offsets(width, size_px, stride_px, grid, from_end=False)
    return rows, cols


def make_tile(row_off: int, col_off: int, size_px: int, transform: Affine) -> Tile:
    """A :class:`Tile` at a pixel offset, georeferenced with the scene ``transform``."""
    window = Window(col_off, row_off, size_px, size_px)
    return Tile(window=window, transform=window_transform(window, transform))


def grid_tiles(
    height: int,
    width: int,
    size_px: int,
    stride_px: int,
    transform: Affine | None = None,
    grid: Grid = "torchgeo",
) -> list[Tile]:
    """Cover a raster grid with square windows.

    Args:
        height: raster rows.
        width: raster columns.
        size_px: tile edge in pixels.
        stride_px: step between tile origins in pixels; must be <= size_px.
        transform: the scene's affine transform (pixel to map coordinates); None: identity.
        grid: ``"torchgeo"`` (GriddedPatchSampler) or ``"inward"`` layout.

    Returns:
        Tiles in row-major order, every pixel covered at least once.

    Raises:
        TilingError: see :func:`check_grid`.
    """
    rows, cols = grid_offsets(height, width, size_px, stride_px, grid)
    transform = transform if transform is not None else Affine.identity()
    return [make_tile(r, c, size_px, transform) for r in rows for c in cols]


def _owner(offset: int, block_px: int, n_blocks: int) -> int:
    return min(max(offset, 0) // block_px, n_blocks - 1)


def iter_blocks(
    height: int,
    width: int,
    block_px: int,
    row_offsets: Sequence[int],
    col_offsets: Sequence[int],
    size_px: int,
    transform: Affine,
) -> Iterator[Block]:
    """Split the scene into output blocks, row-major, each with the tiles it owns.

    Memory stays bounded by the block: tiles are generated per block from the 1-D offsets.

    Args:
        height: scene rows.
        width: scene columns.
        block_px: block edge in pixels.
        row_offsets: window row offsets (from :func:`grid_offsets`).
        col_offsets: window column offsets.
        size_px: window edge in pixels.
        transform: the scene's affine transform.

    Yields:
        Blocks in row-major order.
    """
    n_rows = math.ceil(height / block_px)
    n_cols = math.ceil(width / block_px)
    rows_of: list[list[int]] = [[] for _ in range(n_rows)]
    cols_of: list[list[int]] = [[] for _ in range(n_cols)]
    for r in row_offsets:
        rows_of[_owner(r, block_px, n_rows)].append(r)
    for c in col_offsets:
        cols_of[_owner(c, block_px, n_cols)].append(c)
    for bi in range(n_rows):
        for bj in range(n_cols):
            r0, c0 = bi * block_px, bj * block_px
            window = Window(c0, r0, min(block_px, width - c0), min(block_px, height - r0))
            tiles = tuple(
                make_tile(r, c, size_px, transform) for r in rows_of[bi] for c in cols_of[bj]
            )
            yield Block(
                index_rc=(bi, bj),
                window=window,
                transform=window_transform(window, transform),
                tiles=tiles,
            )
