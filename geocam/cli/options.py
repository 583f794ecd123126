"""Command-line options made from config fields (one declaration per setting: geocam.options).

Every option defaults to None, meaning "not given": a command layers the values given on the
command line over its ``--config`` YAML file and the config's defaults, and ``--help`` shows the
config field's default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..errors import ConfigError
from ..options import FieldSpec, cli_specs

F = TypeVar("F", bound=Callable[..., Any])


def _parse_callback(spec: FieldSpec) -> Callable[[click.Context, click.Parameter, Any], Any]:
    parse = spec.setting.parse
    assert parse is not None

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:  # noqa: ANN401
        if value is None:
            return None
        try:
            return parse(value)
        except ConfigError as err:
            raise click.BadParameter(str(err), ctx=ctx, param=param) from err

    return callback


def _param_type(spec: FieldSpec) -> Any:  # noqa: ANN401 - a click ParamType or a Python type
    s = spec.setting
    if spec.choices:
        return click.Choice(spec.choices, case_sensitive=s.parse is None)
    if s.parse is not None:
        return str
    if spec.kind in (int, float) and (s.low is not None or s.high is not None):
        if spec.kind is int:
            low = None if s.low is None else int(s.low)
            high = None if s.high is None else int(s.high)
            return click.IntRange(min=low, max=high, min_open=s.low_open)
        return click.FloatRange(min=s.low, max=s.high, min_open=s.low_open)
    if spec.kind is Path:
        return click.Path(exists=s.exists, dir_okay=not s.exists, path_type=Path)
    if spec.kind in (int, float):
        return spec.kind
    return str


def click_option(spec: FieldSpec) -> Callable[[F], F]:
    """The click option of one config field (parameter name: the field name)."""
    shown = "required" if spec.required else f"default: {spec.default_text}"
    kwargs: dict[str, Any] = {"default": None, "help": f"{spec.setting.help}  [{shown}]"}
    decls = [spec.flag, spec.name]
    if spec.kind is bool:
        if spec.setting.negatable:
            decls[0] = f"{spec.flag}/--no-{spec.flag[2:]}"
        else:
            kwargs["is_flag"] = True
            kwargs["help"] = spec.setting.help
    else:
        kwargs["type"] = _param_type(spec)
        if spec.setting.parse is not None and not spec.choices:
            kwargs["callback"] = _parse_callback(spec)
    return click.option(*decls, **kwargs)


def config_options(cls: type, skip: Iterable[str] = ()) -> Callable[[F], F]:
    """Decorate a command with an option per command-line setting of a config dataclass."""
    skipped = set(skip)
    specs = [s for s in cli_specs(cls) if s.name not in skipped]

    def decorate(fn: F) -> F:
        for spec in reversed(specs):  # click lists options in decoration order, bottom up
            fn = click_option(spec)(fn)
        return fn

    return decorate


def given(options: dict[str, Any]) -> dict[str, Any]:
    """The options given on the command line (click's None: not given)."""
    return {k: v for k, v in options.items() if v is not None}


config_file = click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML file of settings (any of the options below); command-line values win.",
)

quiet = click.option(
    "-q", "--quiet", is_flag=True, help="No progress bar; warnings and errors only on stderr."
)
