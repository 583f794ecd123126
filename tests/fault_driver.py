"""Run geocam's command line with one fault injected (used by tests/test_faults.py).

``python fault_driver.py FAULT geocam-arguments...`` where FAULT is ``none`` or
``TARGET@N:ACTION``: on the N-th call of TARGET, before the call runs, this process sends itself
ACTION (``kill`` = SIGKILL, ``int`` = SIGINT, ``term`` = SIGTERM). TARGET is
``module:attribute[.attribute]`` (a function looked up at call time, e.g.
``geocam.pipeline.write:write_cog``), or ``commit``: the N-th file move of the output commit.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import conftest  # noqa: F401 - registers the tiny test architecture with timm

SIGNALS = {"kill": signal.SIGKILL, "int": signal.SIGINT, "term": signal.SIGTERM}


def inject(spec: str) -> None:
    target, _, rest = spec.partition("@")
    count, _, action = rest.partition(":")
    when, sig = int(count), SIGNALS[action]
    calls = [0]

    def fire() -> None:
        calls[0] += 1
        if calls[0] == when:
            os.kill(os.getpid(), sig)

    def wrap(real: Callable[..., Any]) -> Callable[..., Any]:
        def patched(*args: Any, **kwargs: Any) -> Any:
            fire()
            return real(*args, **kwargs)

        return patched

    if target == "commit":
        from geocam import outputs

        real_apply, real_replace = outputs._apply, os.replace

        def apply(*args: Any, **kwargs: Any) -> Any:
            os.replace = wrap(real_replace)
            try:
                return real_apply(*args, **kwargs)
            finally:
                os.replace = real_replace

        outputs._apply = apply
        return
    module_name, _, path = target.partition(":")
    owner: Any = importlib.import_module(module_name)
    *parents, attr = path.split(".")
    for name in parents:
        owner = getattr(owner, name)
    setattr(owner, attr, wrap(getattr(owner, attr)))


if __name__ == "__main__":
    fault = sys.argv.pop(1)
    if fault != "none":
        inject(fault)
    from geocam.cli import main

    main(prog_name="geocam")
