"""Scene-run settings: a frozen, validated dataclass, loadable from YAML (``pipelines/scene_cam.yaml``).

Every field has a default that works for the bundled EuroSAT models; ``None`` means "take it
from the model card or the scene's metadata". Validation happens in ``__post_init__`` and raises
:class:`~geocam.errors.ConfigError` naming the field, the value and the fix (STYLE C10).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError

log = logging.getLogger(__name__)

Mode = Literal["exact", "dense"]
Precision = Literal["auto", "fp32", "bf16"]
Grid = Literal["torchgeo", "inward"]
Level = Literal["L1C", "L2A"]

MODES: tuple[str, ...] = ("exact", "dense")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
GRIDS: tuple[str, ...] = ("torchgeo", "inward")

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


@dataclass(frozen=True, slots=True)
class SceneConfig:
    """How to score one scene; every field is validated on construction.

    Attributes:
        window_px: window edge in scene pixels; None: the model card's ``window_px``.
        stride_px: step between window origins in pixels; None: half the window. Must be
            <= ``window_px`` so that every pixel is scored.
        grid: window layout. ``"torchgeo"``: exactly torchgeo 0.10's ``GriddedPatchSampler``
            (the grid is centred on the scene, so edge windows may overhang it by less than half
            a stride; overhanging pixels count as nodata). ``"inward"``: the last row/column of
            windows is shifted inward so that no window leaves the scene (the deprecated
            ``GridGeoSampler`` layout).
        batch_size: windows per model call (64: ResNet50 at 64 px in bf16 on 2 cores ran about
            10 % faster than with 32 or 128).
        bands: explicit band mapping (``B04=3,B03=2,B02=1`` or ``3,2,1``); None: match by name.
        device: torch device, e.g. ``"cpu"`` or ``"cuda"``; ``"auto"``: CUDA when torch sees
            a GPU, else the CPU.
        threads: torch intra-op threads; None: all CPU cores.
        mode: ``"exact"`` (each window on its own, as in training) or ``"dense"`` (one
            backbone pass per block, windows pooled from the feature map; see geocam.dense).
        precision: ``"bf16"``, ``"fp32"``, or ``"auto"`` (bf16 on CPUs with AVX512-BF16 or AMX
            and on CUDA devices that support it, fp32 otherwise): the model's weights and
            activations.
        reflectance_scale: the scene's digital numbers are reflectance x this (Sentinel-2:
            10000); None: from the scene (GDAL scale/offset metadata, 0-1 floats, 8-bit
            true-colour renderings, else 10000). See geocam.radiometry.
        dn_offset: added to digital numbers before scaling (L2A/L1C from processing baseline
            04.00: -1000); None: read it from the product metadata, else 0.
        level: the scene's processing level, ``"L1C"`` or ``"L2A"``; None: from the product
            metadata, tags or names (recorded in run.json).
        l2a_path_radiance: add a typical path radiance (geocam.radiometry.PATH_RADIANCE_DN) to
            L2A scenes so they look like the L1C data the model was trained on (EuroSAT is
            L1C; benchmarks/README.md measures it on real L2A scenes).
        radiometry_check: refuse scenes whose values cannot be reflectance at the scale
            decided (a sample's percentiles; see geocam.radiometry).
        nodata: digital number marking missing pixels; None: the scene's nodata value, else 0
            for Sentinel-2 scenes (the products' NODATA value), else every pixel is valid. In
            float scenes NaN and infinite values are nodata whatever this says.
        min_valid_fraction: windows with fewer valid pixels than this fraction are skipped and
            their area is left as nodata unless another window covers it.
        block_px: edge of the output blocks that are rendered and written at a time; bounds the
            memory of a run. A multiple of every overview factor (a power of two such as 512)
            lets the heat COG's overviews be averaged as blocks are written; otherwise GDAL
            computes them at the end, more slowly.
        threshold: polygon rule, part 1: a pixel is salient for class c when its CAM, divided
            by the class's maximum over the scene, is >= this.
        min_probability: polygon rule, part 2: ...and class c wins the pixel (the class map) or
            the blended window probability of c is >= this.
        sieve_px: connected areas (4-connectivity) smaller than this many pixels are removed
            from the salient masks, and holes smaller than this are filled.
        simplify_px: polygon simplification tolerance in pixels (topology-preserving).
        preview: write ``preview.png``.
        preview_px: longest edge of the preview image in pixels.
        overviews: add overviews to the COGs.
        max_windows: the preflight refuses a scene with more windows than this (0: no limit);
            2,000,000 windows is a full Sentinel-2 tile at a stride of 8 px (about an hour on
            two CPU cores).
        max_memory_mib: the preflight refuses a scene whose stitching lattice and blocks need
            more memory than this, in MiB; None: the memory the machine has available; 0: no
            check.
        gdal_env: GDAL configuration options applied through ``rasterio.Env`` during the run.
            ``GDAL_CACHEMAX`` is in bytes there: the default 64 keeps no block once it is read
            or written (a run reads each block once; a 64 MiB cache added 60 MiB to Havel's
            peak RSS and no speed).
    """

    window_px: int | None = None
    stride_px: int | None = None
    grid: Grid = "torchgeo"
    batch_size: int = 64
    bands: BandSpec | None = None
    device: str = "auto"
    threads: int | None = None
    mode: Mode = "exact"
    precision: Precision = "auto"
    reflectance_scale: float | None = None
    dn_offset: float | None = None
    level: Level | None = None
    l2a_path_radiance: bool = True
    radiometry_check: bool = True
    nodata: float | None = None
    min_valid_fraction: float = 0.5
    block_px: int = 512
    threshold: float = 0.5
    min_probability: float = 0.5
    sieve_px: int = 16
    simplify_px: float = 1.0
    preview: bool = True
    preview_px: int = 1600
    overviews: bool = True
    max_windows: int = 2_000_000
    max_memory_mib: int | None = None
    gdal_env: Mapping[str, Any] = field(
        default_factory=lambda: {"GDAL_NUM_THREADS": "1", "GDAL_CACHEMAX": 64}
    )

    def __post_init__(self) -> None:
        def positive_int(name: str, value: object, allow_none: bool = False) -> None:
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"`{name}`={value!r} must be a positive integer")

        positive_int("window_px", self.window_px, allow_none=True)
        positive_int("stride_px", self.stride_px, allow_none=True)
        positive_int("batch_size", self.batch_size)
        positive_int("threads", self.threads, allow_none=True)
        positive_int("block_px", self.block_px)
        positive_int("preview_px", self.preview_px)
        for name in ("max_windows", "max_memory_mib"):
            value = getattr(self, name)
            if value is None and name == "max_memory_mib":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"`{name}`={value!r} must be an integer >= 0 (0: no limit)")
        if self.nodata is not None and not isinstance(self.nodata, int | float):
            raise ConfigError(f"`nodata`={self.nodata!r} must be a number, nan, or None")
        if self.sieve_px < 0:
            raise ConfigError(f"`sieve_px`={self.sieve_px!r} must be >= 0 (0 disables sieving)")
        if (
            self.window_px is not None
            and self.stride_px is not None
            and self.stride_px > self.window_px
        ):
            raise ConfigError(
                f"`stride_px`={self.stride_px} exceeds `window_px`={self.window_px}; gaps "
                "would be left unscored: use a stride <= the window size"
            )
        if self.window_px is not None and self.block_px < self.window_px:
            raise ConfigError(
                f"`block_px`={self.block_px} is smaller than `window_px`={self.window_px}; "
                "use a block at least one window wide"
            )
        if self.mode not in MODES:
            raise ConfigError(f"`mode`={self.mode!r} is not one of {', '.join(MODES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"`precision`={self.precision!r} is not one of {', '.join(PRECISIONS)}"
            )
        if self.grid not in GRIDS:
            raise ConfigError(f"`grid`={self.grid!r} is not one of {', '.join(GRIDS)}")
        if self.level is not None and self.level not in ("L1C", "L2A"):
            raise ConfigError(f"`level`={self.level!r} is not one of L1C, L2A")
        if self.reflectance_scale is not None and not (
            math.isfinite(self.reflectance_scale) and self.reflectance_scale > 0
        ):
            raise ConfigError(
                f"`reflectance_scale`={self.reflectance_scale!r} must be a positive number "
                "(10000 for Sentinel-2 products, 1000 for reflectance x 1000)"
            )
        if self.dn_offset is not None and not math.isfinite(self.dn_offset):
            raise ConfigError(f"`dn_offset`={self.dn_offset!r} must be a finite number or None")
        for name in ("min_valid_fraction", "threshold", "min_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"`{name}`={value!r} must lie in [0, 1]")
        if self.simplify_px < 0:
            raise ConfigError(f"`simplify_px`={self.simplify_px!r} must be >= 0")
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
    known = {f.name for f in dataclasses.fields(SceneConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    values = dict(raw)
    bands = values.get("bands")
    if isinstance(bands, str):
        values["bands"] = BandSpec.parse(bands)
    elif isinstance(bands, list | tuple):
        values["bands"] = BandSpec.parse(",".join(str(b) for b in bands))
    elif bands is not None and not isinstance(bands, BandSpec):
        raise ConfigError(f"{source}: `bands`={bands!r} must be text such as B04=3,B03=2,B02=1")
    try:
        return SceneConfig(**values)
    except TypeError as err:
        raise ConfigError(f"{source}: {err}") from err


def load_config(path: Path) -> SceneConfig:
    """Read a :class:`SceneConfig` from a YAML file (a mapping of field names to values).

    Raises:
        ConfigError: the file is missing, is not YAML, is not a mapping, or has bad values.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(
            f"`config`={str(path)!r} cannot be read ({err}); pass a YAML file"
        ) from err
    except yaml.YAMLError as err:
        raise ConfigError(f"`config`={str(path)!r} is not valid YAML ({err})") from err
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"`config`={str(path)!r} must hold a mapping of setting: value")
    return from_mapping(raw, source=str(path))
