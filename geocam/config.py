"""Scene-run settings: a frozen, validated dataclass, loadable from YAML (``pipelines/scene_cam.yaml``).

Every field has a default that works for the bundled EuroSAT models; ``None`` means "take it
from the model card or the scene's metadata". Each field is declared once with
:func:`geocam.options.setting`; validation happens in ``__post_init__`` and raises
:class:`~geocam.errors.ConfigError` naming the field, the value and the fix (STYLE C10).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from . import options
from .errors import ConfigError
from .options import (
    batch_size_setting,
    check_fields,
    device_setting,
    precision_setting,
    setting,
    threads_setting,
)

log = logging.getLogger(__name__)

Mode = Literal["exact", "dense"]
Precision = Literal["auto", "fp32", "bf16"]
Grid = Literal["torchgeo", "inward"]
Level = Literal["L1C", "L2A"]

MODES: tuple[str, ...] = typing.get_args(Mode)
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)
GRIDS: tuple[str, ...] = typing.get_args(Grid)

_BAND_NAME = re.compile(r"^B(0?[1-9]|1[0-2]|8A)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class BandSpec:
    """An explicit mapping of the model's bands to scene band indexes (1-based, like GDAL).

    Attributes:
        named: ``(("B04", 3), ("B03", 2), ("B02", 1))`` for ``B04=3,B03=2,B02=1``; empty if positional.
        positional: ``(3, 2, 1)`` for ``3,2,1``: the scene bands feeding the model's bands in
            the model's channel order; empty if named.
    """

    named: tuple[tuple[str, int], ...] = ()
    positional: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> BandSpec:
        """Parse ``"B04=3,B03=2,B02=1"`` (named) or ``"3,2,1"`` (positional).

        Raises:
            ConfigError: the text mixes both forms, has a non-integer index, an index < 1, a
                name that is not a Sentinel-2 band, or a duplicate.
        """
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise ConfigError(f"`bands`={text!r} is empty; pass e.g. B04=3,B03=2,B02=1 or 3,2,1")
        named = [i for i in items if "=" in i]
        if named and len(named) != len(items):
            raise ConfigError(
                f"`bands`={text!r} mixes NAME=INDEX and plain indexes; use one form, "
                "e.g. B04=3,B03=2,B02=1 or 3,2,1"
            )
        try:
            if named:
                pairs = []
                for item in items:
                    name, _, index = item.partition("=")
                    pairs.append((normalise_band_name(name.strip()), int(index)))
                spec = cls(named=tuple(pairs))
            else:
                spec = cls(positional=tuple(int(i) for i in items))
        except ValueError as err:
            raise ConfigError(
                f"`bands`={text!r} has a bad item ({err}); indexes are 1-based integers, "
                "names Sentinel-2 bands such as B04 or B8A"
            ) from err
        indexes = [i for _, i in spec.named] or list(spec.positional)
        if min(indexes) < 1:
            raise ConfigError(f"`bands`={text!r}: band indexes start at 1 (GDAL numbering)")
        names = [n for n, _ in spec.named]
        if len(set(names)) != len(names):
            raise ConfigError(f"`bands`={text!r} names a band twice; name each model band once")
        return spec

    def __str__(self) -> str:
        if self.named:
            return ",".join(f"{n}={i}" for n, i in self.named)
        return ",".join(str(i) for i in self.positional)


def normalise_band_name(name: str) -> str:
    """Canonical Sentinel-2 band name: ``"b4"``, ``"B4"``, ``"B04"`` -> ``"B04"``; ``"b8a"`` -> ``"B8A"``.

    Raises:
        ValueError: ``name`` is not a Sentinel-2 band name.
    """
    match = _BAND_NAME.match(name.strip())
    if not match:
        raise ValueError(f"{name!r} is not a Sentinel-2 band name such as B04 or B8A")
    number = match.group(1).upper()
    return "B8A" if number == "8A" else f"B{int(number):02d}"


def _dn_offset(text: str) -> float | None:
    """``--dn-offset``: ``auto`` (None: from the product metadata) or a number."""
    if text.strip().lower() == "auto":
        return None
    try:
        return float(text)
    except ValueError as err:
        raise ConfigError(f"`dn_offset`={text!r} is neither 'auto' nor a number") from err


def _level(text: str) -> str:
    """``--level``: L1C or L2A, in either case."""
    return text.strip().upper()


@dataclass(frozen=True, slots=True)
class SceneConfig:
    """How to score one scene; every field is validated on construction.

    Each field's help, flag, default and bounds are declared with it (:func:`setting`); the
    CLI options, the YAML loader and the README table come from there. Notes on the whys:

    * ``grid="torchgeo"`` is exactly torchgeo 0.10's ``GriddedPatchSampler``: the grid is
      centred on the scene, so edge windows may overhang it by less than half a stride
      (overhanging pixels count as nodata); ``"inward"`` shifts the last row and column of
      windows inward (the deprecated ``GridGeoSampler`` layout).
    * ``stride_px`` must not exceed ``window_px``, so that every pixel is scored.
    * ``l2a_path_radiance`` adds geocam.radiometry.PATH_RADIANCE_DN to L2A scenes so they look
      like the L1C data EuroSAT was rendered from.
    * ``block_px`` bounds the memory of a run. A multiple of every overview factor (a power of
      two) lets the heat COG's overviews be averaged as blocks are written; otherwise GDAL
      computes them at the end, more slowly.
    * ``gdal_env`` is applied through ``rasterio.Env``; ``GDAL_CACHEMAX`` is in bytes there,
      and the small default keeps no block once read or written (a run reads each block once).
    """

    window_px: int | None = setting(
        None, help="Window edge in pixels.", low=1, shown="the model's window on the ground"
    )
    stride_px: int | None = setting(
        None, help="Step between window origins in pixels.", low=1, shown="window / 2"
    )
    grid: Grid = setting(
        "torchgeo",
        help="Window layout: torchgeo (GriddedPatchSampler, centred) or inward (edges shifted in).",
    )
    batch_size: int = batch_size_setting(64)
    bands: BandSpec | None = setting(
        None,
        help="Scene bands for the model's bands: B04=3,B03=2,B02=1 or 3,2,1 (1-based).",
        parse=BandSpec.parse,
        shown="matched by name",
        hint="e.g. B04=3,B03=2,B02=1 or 3,2,1",
    )
    device: str = device_setting("auto")
    threads: int | None = threads_setting()
    mode: Mode = setting(
        "exact",
        help="Engine: exact (each window alone, as in training) or dense (one backbone pass "
        "per block, windows pooled from the feature map).",
    )
    precision: Precision = precision_setting()
    reflectance_scale: float | None = setting(
        None,
        help="Scene DNs are reflectance x this.",
        low=0,
        low_open=True,
        finite=True,
        shown="from the scene, else 10000",
        hint="10000 for Sentinel-2 products, 1000 for reflectance x 1000",
    )
    dn_offset: float | None = setting(
        None,
        help="Added to DNs first: 'auto' (product metadata) or a number, e.g. -1000.",
        finite=True,
        parse=_dn_offset,
        shown="auto",
    )
    level: Level | None = setting(
        None,
        help="Processing level, L1C or L2A.",
        parse=_level,
        shown="from product metadata, tags or names",
    )
    l2a_path_radiance: bool = setting(
        True, help="Add a typical path radiance to L2A scenes (L1C-like, as EuroSAT)."
    )
    radiometry_check: bool = setting(
        True, help="Refuse values that cannot be reflectance at the scale decided."
    )
    nodata: float | None = setting(
        None,
        help="Nodata DN (NaN and infinite values in float scenes are nodata anyway).",
        shown="the scene's; 0 for Sentinel-2",
    )
    min_valid_fraction: float = setting(
        0.5, help="Skip windows with a smaller valid fraction.", flag="--min-valid", low=0, high=1
    )
    block_px: int = setting(512, help="Output block edge in pixels; bounds memory.", low=1)
    threshold: float = setting(
        0.5, help="Polygons: min CAM / the class's scene maximum.", low=0, high=1
    )
    min_probability: float = setting(
        0.5, help="Polygons: min window probability where the class does not win.", low=0, high=1
    )
    sieve_px: int = setting(
        16, help="Polygons: drop areas and fill holes under this many pixels.", low=0,
        hint="0 disables sieving",
    )  # fmt: skip
    simplify_px: float = setting(
        1.0, help="Polygons: simplification tolerance in pixels (topology-preserving).", low=0
    )
    preview: bool = setting(True, help="Write preview.png.")
    preview_px: int = setting(1600, help="Longest edge of preview.png in pixels.", low=1, cli=False)
    overviews: bool = setting(True, help="Add overviews to the COGs.")
    max_windows: int = setting(
        2_000_000,
        help="Refuse scenes with more windows (a Sentinel-2 tile at stride 8 px).",
        low=0,
        hint="0: no limit",
    )
    max_memory_mib: int | None = setting(
        None,
        help="Refuse scenes whose stitching lattice and blocks need more MiB.",
        low=0,
        shown="available memory",
        hint="0: no check",
    )
    gdal_env: Mapping[str, Any] = setting(
        default_factory=lambda: {"GDAL_NUM_THREADS": "1", "GDAL_CACHEMAX": 64},
        help="GDAL configuration options for the run (GDAL_CACHEMAX in bytes).",
        cli=False,
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.window_px is not None:
            self.resolved_window(self.window_px)  # stride and block against the window
        if not self.device.strip():
            raise ConfigError("`device`='' is empty; pass e.g. cpu or cuda")

    def replace(self, **changes: Any) -> SceneConfig:  # noqa: ANN401
        """A copy with some fields changed (validated again); ``None`` values are ignored."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return from_mapping({**to_mapping(self), **changes})

    def resolved_window(self, card_window_px: int) -> tuple[int, int]:
        """Window and stride in pixels, filling ``None`` from the model card.

        Args:
            card_window_px: the model's training window edge in pixels.

        Raises:
            ConfigError: the resolved stride exceeds the window.
        """
        window_px = self.window_px or card_window_px
        stride_px = self.stride_px or max(1, window_px // 2)
        if stride_px > window_px:
            raise ConfigError(
                f"`stride_px`={stride_px} exceeds `window_px`={window_px}; gaps would be left "
                "unscored: use a stride <= the window size"
            )
        if self.block_px < window_px:
            raise ConfigError(
                f"`block_px`={self.block_px} is smaller than `window_px`={window_px}; use a "
                "block at least one window wide"
            )
        return window_px, stride_px


def to_mapping(config: SceneConfig) -> dict[str, Any]:
    """Plain-data form of a config (JSON/YAML-friendly; ``bands`` as its text form)."""
    out = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    out["bands"] = None if config.bands is None else str(config.bands)
    out["gdal_env"] = dict(config.gdal_env)
    return out


def from_mapping(raw: Mapping[str, Any], source: str = "config") -> SceneConfig:
    """Build a :class:`SceneConfig` from plain data (YAML), validating keys and values.

    Args:
        raw: field names to values; ``bands`` may be text such as ``"B04=3,B03=2,B02=1"``.
        source: where the data came from, for error messages.

    Raises:
        ConfigError: an unknown key or an invalid value.
    """
    return options.from_mapping(SceneConfig, raw, source)


def load_config(path: Path) -> SceneConfig:
    """Read a :class:`SceneConfig` from a YAML file (a mapping of field names to values).

    Raises:
        ConfigError: the file is missing, is not YAML, is not a mapping, or has bad values.
    """
    return from_mapping(options.read_yaml(path), source=str(path))
