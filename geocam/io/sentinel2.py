"""Sentinel-2 products: band file names, scenes named by the inputs, the product metadata's DN offset."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from xml.etree import ElementTree

from ..errors import SceneError

log = logging.getLogger(__name__)


#: Sentinel-2 band order in products (B8A after B08); band files are stacked in this order.
S2_PRODUCT_ORDER: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07",
    "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip


#: A Sentinel-2 band file: ``<prefix>_B04.jp2``, ``<prefix>_B04_10m.jp2``, ``<prefix>_B8A.tif``.
BAND_FILE = re.compile(
    r"^(?P<prefix>.*?)[_.-]?(?P<band>B(?:0?[1-9]|1[0-2]|8A))(?:_(?P<res>\d+)m)?"
    r"\.(?:jp2|tif|tiff)$",
    re.IGNORECASE,
)


_BASELINE = re.compile(r"_N(\d{4})_")


_METADATA_FILES = ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml")


def group_inputs(paths: Sequence[Path]) -> list[tuple[str, tuple[Path, ...]]]:
    """Group command-line inputs into scenes.

    A directory is one scene made of the Sentinel-2 band files below it (the finest resolution of
    each band is kept). Files named like Sentinel-2 band files (``*_B04.jp2``, ``*_B04_10m.jp2``)
    that share a prefix form one scene; any other file is a scene of its own.

    Args:
        paths: files and directories as given.

    Returns:
        (scene name, files) per scene, in input order.

    Raises:
        SceneError: a path does not exist or a directory holds no band files.
    """
    scenes: dict[str, list[Path]] = {}
    names: dict[str, str] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise SceneError(f"`scene`={str(path)!r} does not exist; pass a GeoTIFF or band files")
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and BAND_FILE.match(p.name))
            if not found:
                raise SceneError(
                    f"`scene`={str(path)!r} is a directory without Sentinel-2 band files "
                    "(*_B04.jp2 ...); pass a GeoTIFF or the band files"
                )
            key = str(path.resolve())  # two folders of one name are two scenes
            scenes.setdefault(key, []).extend(found)
            names.setdefault(key, path.resolve().name or "scene")
            continue
        match = BAND_FILE.match(path.name)
        key = f"{path.parent.resolve()}/{match.group('prefix')}" if match else str(path.resolve())
        scenes.setdefault(key, []).append(path)
        names.setdefault(key, Path(key).name or "scene")
    out = []
    seen: set[frozenset[Path]] = set()
    for key, given in scenes.items():
        files: list[Path] = []
        for file in given:  # a file given twice is read once
            if all(file.resolve() != f.resolve() for f in files):
                files.append(file)
        resolved = frozenset(f.resolve() for f in files)
        if resolved in seen:  # the same scene given twice (a.tif ./a.tif) runs once
            continue
        seen.add(resolved)
        name = names[key]
        if len(files) == 1 and not Path(key).is_dir():
            name = files[0].stem
        out.append((safe_name(name), tuple(files)))
    return out


def safe_name(name: str) -> str:
    """A scene name fit for a folder: runs of other characters become ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "scene"


def product_metadata(paths: Sequence[Path]) -> tuple[str, Path, ElementTree.Element] | None:
    """The product metadata file up to four folders above the first file, or None.

    Returns:
        (``MTD_MSIL2A.xml`` or ``MTD_MSIL1C.xml``, its path, its parsed root element).
    """
    first = Path(paths[0]).resolve()
    for folder in list(first.parents)[:5]:
        for meta_name in _METADATA_FILES:
            meta = folder / meta_name
            if meta.is_file():
                try:
                    return meta_name, meta, ElementTree.parse(meta).getroot()
                except ElementTree.ParseError:
                    continue
    return None


def metadata_text(meta: tuple[str, Path, ElementTree.Element] | None, tag: str) -> str | None:
    """The text of the first element named ``tag`` (namespaces ignored) in the metadata."""
    if meta is None:
        return None
    for el in meta[2].iter():
        if el.tag.split("}")[-1] == tag and el.text:
            return el.text.strip()
    return None


def detect_dn_offset(
    paths: Sequence[Path],
    tags: Mapping[str, str],
    meta: tuple[str, Path, ElementTree.Element] | None = None,
) -> tuple[float, str]:
    """Find the offset to add to Sentinel-2 digital numbers (-1000 from baseline 04.00).

    Looks, in order, at the product metadata file (``MTD_MSIL2A.xml``: ``BOA_ADD_OFFSET``,
    ``MTD_MSIL1C.xml``: ``RADIO_ADD_OFFSET``, ``PROCESSING_BASELINE``), at the GeoTIFF tags
    (``BOA_ADD_OFFSET*``, ``RADIO_ADD_OFFSET*``, ``PROCESSING_BASELINE``), and at a processing
    baseline in the file path (``_N0400_``).

    Args:
        paths: the scene's files.
        tags: the reference file's dataset tags.
        meta: the product metadata (see :func:`product_metadata`); None: look for it.

    Returns:
        (offset, a description of where it came from); (0.0, ...) when nothing says otherwise.
    """
    meta = meta if meta is not None else product_metadata(paths)
    if meta is not None:
        meta_name, meta_path, _ = meta
        for tag in ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET"):
            text = metadata_text(meta, tag)
            if text:
                return float(text), f"{meta_name} {tag} ({meta_path})"
        text = metadata_text(meta, "PROCESSING_BASELINE")
        if text:
            off = -1000.0 if float(text) >= 4.0 else 0.0
            return off, f"{meta_name} PROCESSING_BASELINE {text}"
    for key, value in tags.items():
        if "ADD_OFFSET" in key.upper():
            try:
                return float(value), f"tag {key}"
            except ValueError:
                continue
    for key, value in tags.items():
        if key.upper().endswith("PROCESSING_BASELINE"):
            try:
                return (-1000.0 if float(value) >= 4.0 else 0.0), f"tag {key}={value}"
            except ValueError:
                continue
    for path in paths:
        match = _BASELINE.search(str(Path(path).resolve()))
        if match:
            baseline = int(match.group(1))
            return (-1000.0 if baseline >= 400 else 0.0), f"processing baseline N{baseline:04d}"
    return 0.0, "default (no offset metadata found)"
