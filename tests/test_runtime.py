"""Device, precision and the process state a run touches (scoped, or through explicit hooks)."""

from __future__ import annotations

import pytest
import torch

from geocam import runtime
from geocam.errors import ConfigError
from geocam.runtime import (
    MALLOC_TUNING,
    NO_HOOKS,
    cpu_supports_bf16,
    resolve_precision,
    torch_device,
    torch_threads,
)


def test_cpu_bf16_means_avx512_bf16_or_amx() -> None:
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert cpu_supports_bf16() == native


def test_bf16_where_it_is_not_native_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: False)
    assert resolve_precision("auto", cpu) == "fp32"
    with pytest.raises(ConfigError, match="`precision`='bf16' is not supported"):
        resolve_precision("bf16", cpu)
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: True)
    assert resolve_precision("auto", cpu) == "bf16"


def test_resolve_precision() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("auto", cpu) in ("fp32", "bf16")


def test_auto_device_is_cuda_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert torch_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert torch_device("auto") == torch.device("cuda")
    with pytest.raises(ConfigError, match="not a torch device"):
        torch_device("gpu0")


def test_torch_threads_are_restored_on_every_exit() -> None:
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(other):
        raise RuntimeError("a run that fails")
    assert torch.get_num_threads() == before


def test_a_library_run_gets_no_tuning() -> None:
    # Nothing to call: the malloc settings belong to the process owner (MALLOC_TUNING).
    assert NO_HOOKS.model_pass() is None and NO_HOOKS.raster_pass() is None
    assert MALLOC_TUNING.model_pass is not NO_HOOKS.model_pass
