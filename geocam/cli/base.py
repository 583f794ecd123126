"""The ``geocam`` command group, and how commands end: errors, signals and warnings."""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable
from typing import Any

import click

from ..errors import GeocamError
from ..terminal import INTERRUPTS, Terminated
from .logs import configure_logging


def fail_cleanly[**P, R](fn: Callable[P, R]) -> Callable[P, R]:
    """Turn geocam errors into a one-line message and exit code 2, and signals into 128 + signal.

    Ctrl-C (SIGINT) and SIGTERM exit with 130 and 143, as shells and schedulers expect of an
    interrupted program, after a one-line message; the library has removed what it had staged.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except GeocamError as err:
            click.echo(f"geocam: error: {err}", err=True)
            sys.exit(2)
        except (KeyboardInterrupt, Terminated) as err:
            signum = signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT
            click.echo(
                f"geocam: error: interrupted by {signum.name}; nothing half-written is left "
                "(outputs of finished scenes are complete; rerun the command to finish)",
                err=True,
            )
            sys.exit(128 + signum)

    return wrapper


def show_warning(
    message: Warning | str,
    category: type[Warning],
    *args: Any,  # noqa: ANN401
    **kwargs: Any,  # noqa: ANN401
) -> None:
    """``warnings.showwarning`` for commands: one ``geocam: warning:`` line on stderr."""
    click.echo(f"geocam: warning: {message}", err=True)


def verbosity(quiet: bool = False) -> int:
    """The ``-v`` count of this invocation; 0 with ``-q``."""
    if quiet:
        return 0
    root = click.get_current_context().find_root()
    return int((root.obj or {}).get("verbose", 0))


@click.group()
@click.version_option(package_name="geocam")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """Where a land-cover classifier sees each class across whole satellite scenes."""
    ctx.obj = {"verbose": verbose}
    configure_logging(verbose)
    # SIGTERM (a killed job, a scheduler's timeout) unwinds like Ctrl-C, so the library's
    # cleanup runs and no temporary output folder is left behind.
    INTERRUPTS.install()
