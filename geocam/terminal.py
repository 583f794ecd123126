"""The command line's terminal: what C libraries print is set aside while a run works.

Only :mod:`geocam.cli` uses this module (the library leaves the process's streams alone).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator

import click


@contextlib.contextmanager
def c_stderr_aside(verbose: int, reconfigure: Callable[[], None]) -> Iterator[None]:
    """Keep what C libraries print on file descriptor 2 out of the terminal while a run works.

    libtiff prints lines such as ``_tiffWriteProc: No space left on device.`` itself, next to
    the error GDAL reports; geocam's one-line message says it. Python's own output goes on to
    the terminal; with ``-v`` the set-aside text follows at the end. Nothing changes when stderr
    is not file descriptor 2 (click's test runner).

    Args:
        verbose: ``-v`` count; above 0 the set-aside text is shown at the end.
        reconfigure: sets logging up again on ``sys.stderr`` (called after each switch).
    """
    try:
        is_fd2 = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        is_fd2 = False
    if not is_fd2:
        yield
        return
    sys.stderr.flush()
    saved, python_stderr = os.dup(2), sys.stderr
    with tempfile.TemporaryFile() as sink:
        sys.stderr = open(os.dup(saved), "w", buffering=1, errors="backslashreplace")  # noqa: SIM115
        os.dup2(sink.fileno(), 2)
        reconfigure()  # log handlers on the new stream
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sys.stderr.close()
            sys.stderr = python_stderr
            reconfigure()
            sink.seek(0)
            text = sink.read().decode(errors="backslashreplace").strip()
            if text and verbose:
                click.echo(f"geocam: C libraries said:\n{text}", err=True)
