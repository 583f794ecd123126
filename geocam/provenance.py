"""Provenance of a run's files: software, version, model hash, scene and a reproducible date.

The date is not the wall clock, so that rerunning a scene writes the same bytes: it is
``SOURCE_DATE_EPOCH`` (the reproducible-builds convention, seconds since 1970 UTC) when that is
set, else the newest modification time of the scene's files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

#: Environment variable that fixes the provenance date (seconds since the epoch, UTC).
DATE_ENV = "SOURCE_DATE_EPOCH"


def geocam_version() -> str:
    """The installed geocam version (``"unknown"`` when not installed)."""
    try:
        return metadata.version("geocam")
    except metadata.PackageNotFoundError:
        return "unknown"


def provenance_date(paths: Sequence[Path]) -> datetime:
    """The run's date: ``$SOURCE_DATE_EPOCH``, else the newest mtime of ``paths`` (UTC, seconds).

    Args:
        paths: the scene's files.
    """
    epoch = os.environ.get(DATE_ENV, "").strip()
    if epoch.isdigit():
        seconds = int(epoch)
    else:
        seconds = max((int(Path(p).stat().st_mtime) for p in paths), default=0)
    return datetime.fromtimestamp(seconds, tz=UTC)


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a run's outputs come from.

    Attributes:
        version: geocam version.
        model_sha256: SHA-256 of the model file.
        scene: scene name.
        date: the run's date (see :func:`provenance_date`), UTC.
    """

    version: str
    model_sha256: str
    scene: str
    date: datetime

    @property
    def iso_date(self) -> str:
        """``2017-02-16T10:00:00Z``."""
        return self.date.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    @property
    def gpkg_date(self) -> str:
        """The date as a GeoPackage DATETIME: ``2017-02-16T10:00:00.000Z``."""
        return self.date.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def items(self) -> dict[str, str]:
        """The provenance as metadata items (``GEOCAM_*``), for GeoTIFF and GeoPackage."""
        return {
            "GEOCAM_VERSION": self.version,
            "GEOCAM_MODEL_SHA256": self.model_sha256,
            "GEOCAM_SCENE": self.scene,
            "GEOCAM_DATE": self.iso_date,
        }

    def tiff_tags(self, description: str) -> dict[str, str]:
        """GeoTIFF metadata: baseline TIFF tags (software, date, description) and the items.

        Args:
            description: the ImageDescription tag's text.
        """
        return {
            "TIFFTAG_SOFTWARE": f"geocam {self.version}",
            "TIFFTAG_DATETIME": self.date.astimezone(UTC).strftime("%Y:%m:%d %H:%M:%S"),
            "TIFFTAG_IMAGEDESCRIPTION": description,
            **self.items(),
        }

    def summary(self) -> str:
        """One line for descriptions and abstracts."""
        return (
            f"geocam {self.version}, model sha256 {self.model_sha256}, scene {self.scene}, "
            f"{self.iso_date}"
        )
