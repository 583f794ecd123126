"""Provenance: a date that reruns reproduce, and the tags it goes into."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from geocam.provenance import Provenance, provenance_date


def test_date_is_source_date_epoch_else_the_newest_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    a.write_text("a")
    b.write_text("b")
    os.utime(a, (1_000_000_000, 1_000_000_000))
    os.utime(b, (1_400_000_000.7, 1_400_000_000.7))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert provenance_date([a, b]) == datetime.fromtimestamp(1_400_000_000, tz=UTC)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1487239200")
    assert provenance_date([a, b]) == datetime(2017, 2, 16, 10, tzinfo=UTC)


def test_tags() -> None:
    p = Provenance("0.1.0", "ab" * 32, "havel", datetime(2017, 2, 16, 10, tzinfo=UTC))
    tags = p.tiff_tags("heat")
    assert tags["TIFFTAG_SOFTWARE"] == "geocam 0.1.0"
    assert tags["TIFFTAG_DATETIME"] == "2017:02:16 10:00:00"
    assert tags["GEOCAM_DATE"] == "2017-02-16T10:00:00Z" and tags["GEOCAM_SCENE"] == "havel"
    assert p.gpkg_date == "2017-02-16T10:00:00.000Z"
