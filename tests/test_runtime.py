"""Device, precision and the process state a run touches (scoped, or through explicit hooks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from geocam import allocator, runtime
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


SMAPS = """\
7f0000000000-7f0000100000 r--p 00000000 08:01 11 /venv/site-packages/nvidia/cu13/lib/libcublasLt.so.13
Rss:                1024 kB
Anonymous:             0 kB
7f0000100000-7f0000200000 r-xp 00100000 08:01 11 /venv/site-packages/nvidia/cu13/lib/libcublasLt.so.13
Rss:                2048 kB
Anonymous:             0 kB
7f0000200000-7f0000300000 r--p 00200000 08:01 11 /venv/site-packages/nvidia/cu13/lib/libcublasLt.so.13
Rss:                 512 kB
Anonymous:             8 kB
7f0000300000-7f0000400000 rw-p 00300000 08:01 11 /venv/site-packages/nvidia/cu13/lib/libcublasLt.so.13
Rss:                 512 kB
Anonymous:             0 kB
7f0000400000-7f0000500000 r-xp 00000000 08:01 12 /venv/site-packages/torch/lib/libtorch_cpu.so
Rss:                4096 kB
Anonymous:             0 kB
7f0000500000-7f0000600000 r-xp 00000000 08:01 13 /venv/site-packages/torch/lib/libtorch_cuda.so
Rss:                   0 kB
Anonymous:             0 kB
7f0000600000-7f0000700000 rw-p 00000000 00:00 0
Rss:                 256 kB
Anonymous:           256 kB
7f0000700000-7f0000800000 r--p 00000000 08:01 14 /usr/lib/locale/locale-archive
Rss:                 128 kB
Anonymous:             0 kB
"""


def test_only_read_only_unmodified_library_pages_are_dropped() -> None:
    # Copy-on-write pages (relocated data, written globals) would come back as the file's bytes.
    found = allocator._clean_library_mappings(SMAPS + "\n")
    assert found == [
        (0x7F0000000000, 0x7F0000100000, 1024 << 10),
        (0x7F0000100000, 0x7F0000200000, 2048 << 10),
        (0x7F0000400000, 0x7F0000500000, 4096 << 10),
    ]


LIBRARY_PAGES_SCRIPT = """
import json, torch
from pathlib import Path
from geocam import allocator

def resident():
    smaps = Path("/proc/self/smaps").read_text()
    return sum(rss for _, _, rss in allocator._clean_library_mappings(smaps))

x = torch.arange(16.0).reshape(1, 1, 4, 4)
expected = torch.nn.functional.conv2d(x, torch.ones(1, 1, 3, 3))
before = resident()
dropped = allocator.drop_library_pages()
after = resident()
same = torch.equal(torch.nn.functional.conv2d(x, torch.ones(1, 1, 3, 3)), expected)
print(json.dumps({"before": before, "dropped": dropped, "after": after, "same": same}))
"""


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
def test_library_pages_leave_the_resident_set_and_torch_still_runs() -> None:
    # A fresh interpreter: this one's pages may have been dropped by an earlier run already.
    out = subprocess.run(
        [sys.executable, "-c", LIBRARY_PAGES_SCRIPT], capture_output=True, text=True, check=True
    )
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["before"] > 20 << 20  # torch's own libraries alone hold more after the import
    assert got["dropped"] >= 0.9 * got["before"]
    assert got["after"] < 0.1 * got["before"]  # what the interpreter touched again since
    assert got["same"]


def test_the_process_owner_and_the_model_pass_drop_library_pages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if allocator._libc() is None:
        pytest.skip("not glibc: no malloc tuning to apply")
    calls: list[str] = []
    monkeypatch.setattr(allocator, "drop_library_pages", lambda: calls.append("drop") or 0)
    runtime.configure_process(None)  # before the model loads
    MALLOC_TUNING.model_pass()
    MALLOC_TUNING.raster_pass()
    assert calls == ["drop", "drop"]
