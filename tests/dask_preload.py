"""Dask worker preload for the tests: registers conftest's tiny timm architecture."""

import conftest  # noqa: F401
