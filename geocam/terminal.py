"""The command line's process: interrupts taken at safe points, C libraries' stderr set aside.

Only :mod:`geocam.cli` uses this module (the library leaves signals and streams alone).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from types import FrameType

import click


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every cleanup runs, as for Ctrl-C."""


def raise_for(signum: int) -> None:
    """Raise what a signal means: :class:`KeyboardInterrupt` (SIGINT) or :class:`Terminated`."""
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt()


class Interrupts:
    """SIGINT and SIGTERM: raised at once, or, inside :meth:`held`, at the next safe point.

    An exception raised at an arbitrary point can land inside ``ThreadPoolExecutor.submit``
    while it starts its thread; the pool then loses track of the thread, its shutdown does not
    wait for it, and files the thread still writes get closed under it. While the library works
    (between two progress events) a first signal is therefore only noted, and :meth:`check`
    raises it when the library hands control back; a second signal acts at once.
    """

    def __init__(self) -> None:
        self.pending: int | None = None
        self._holding = False

    def install(self) -> None:
        """Handle SIGINT and SIGTERM with this object (main thread only)."""
        self.pending = None
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._holding and self.pending is None:
            self.pending = signum
            return
        raise_for(signum)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Note the first signal instead of raising it, until the block ends."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    def check(self) -> None:
        """Raise a signal noted while held."""
        if self.pending is not None:
            signum, self.pending = self.pending, None
            raise_for(signum)


#: The command line's interrupts.
INTERRUPTS = Interrupts()


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
