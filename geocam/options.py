"""Settings declared once: each config field carries its default, help text, flag and bounds.

A config dataclass (:class:`~geocam.config.SceneConfig`,
:class:`~geocam.training.config.TrainConfig`, ...) declares each user setting with
:func:`setting`. From that one declaration come

* the validation of every value (:func:`check_fields`, called from ``__post_init__``),
* the YAML loader (:func:`from_mapping`, :func:`read_yaml`): an unknown key or a value of the
  wrong type is a :class:`~geocam.errors.ConfigError` naming the key and the fix,
* the command-line options (``geocam.cli.options``) and the README option tables
  (``scripts/options_table.py``).

The kind of a value (integer, number, flag, choice, path, text) is read from the field's type
annotation; a ``Literal`` gives the choices, ``X | None`` allows ``None``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError

#: Metadata key of a field's :class:`Setting`.
KEY = "geocam.setting"


@dataclass(frozen=True, slots=True)
class Setting:
    """How a config field reads to users.

    Attributes:
        help: one line for ``--help`` and the README table.
        flag: the command-line flag; None: ``--`` and the field name with dashes.
        cli: offered on the command line (False: in YAML files only).
        low: smallest value allowed (numbers).
        high: largest value allowed (numbers).
        low_open: ``low`` itself is not allowed.
        finite: refuse infinite and NaN values (numbers).
        parse: turns text (a command-line value, a YAML string or list) into the value;
            raises :class:`~geocam.errors.ConfigError`.
        shown: how the default reads in help and docs (e.g. "all cores" for None).
        negatable: a flag comes as a pair ``--x/--no-x`` (else a plain switch).
        hint: what a refused value should be instead, added to the error message.
        exists: a path that must name an existing file (checked on the command line).
    """

    help: str
    flag: str | None = None
    cli: bool = True
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    finite: bool = False
    parse: Callable[[str], Any] | None = None
    shown: str | None = None
    negatable: bool = True
    hint: str = ""
    exists: bool = False


def setting(
    default: Any = dataclasses.MISSING,  # noqa: ANN401 - any field type
    *,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,  # noqa: ANN401
    **kwargs: Any,  # noqa: ANN401 - Setting's fields
) -> Any:  # noqa: ANN401 - dataclasses.field's own return type
    """A dataclass field declared as a user setting (see :class:`Setting` for ``kwargs``)."""
    return dataclasses.field(
        default=default, default_factory=default_factory, metadata={KEY: Setting(**kwargs)}
    )


# Settings that several commands share: the same flag, type, help and bounds everywhere.


def threads_setting() -> Any:  # noqa: ANN401 - a dataclass field
    """``--threads``: torch intra-op threads; None: all CPU cores."""
    return setting(None, help="torch CPU threads.", low=1, shown="all cores")


def batch_size_setting(default: int) -> Any:  # noqa: ANN401 - a dataclass field
    """``--batch-size``: images (windows) per model call."""
    return setting(default, help="Images per model call.", low=1)


def precision_setting() -> Any:  # noqa: ANN401 - a dataclass field
    """``--precision``: auto, fp32 or bf16."""
    return setting(
        "auto", help="bf16, fp32, or auto: bf16 where native (AVX512-BF16, AMX, CUDA GPUs)."
    )


def device_setting(default: str) -> Any:  # noqa: ANN401 - a dataclass field
    """``--device``: a torch device name, or auto."""
    return setting(default, help="torch device: auto (CUDA when present), cpu, cuda, cuda:1.")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A config field as a user setting: its name, kind, default and :class:`Setting`."""

    name: str
    kind: type
    optional: bool
    choices: tuple[str, ...]
    default: Any
    setting: Setting

    @property
    def required(self) -> bool:
        """The field has no default."""
        return self.default is dataclasses.MISSING

    @property
    def flag(self) -> str:
        """The command-line flag."""
        return self.setting.flag or "--" + self.name.replace("_", "-")

    @property
    def default_text(self) -> str:
        """The default as help and docs show it."""
        if self.setting.shown is not None:
            return self.setting.shown
        if self.required:
            return "required"
        if isinstance(self.default, bool):
            return "on" if self.default else "off"
        if isinstance(self.default, Mapping):
            return ", ".join(f"{k}={v}" for k, v in self.default.items())
        if isinstance(self.default, int) and abs(self.default) >= 10_000:
            return f"{self.default:,}"
        return "none" if self.default is None else str(self.default)

    def expected(self) -> str:
        """What a valid value is, in words."""
        s = self.setting
        if self.choices:
            text = "one of " + ", ".join(self.choices)
        elif self.kind is bool:
            text = "true or false"
        elif self.kind in (int, float):
            text = "an integer" if self.kind is int else "a number"
            if s.low is not None and s.high is not None:
                text += f" in {'(' if s.low_open else '['}{_num(s.low)}, {_num(s.high)}]"
            elif s.low is not None:
                text += f" {'>' if s.low_open else '>='} {_num(s.low)}"
        elif self.kind is Path:
            text = "a path"
        elif self.setting.parse is not None or self.kind is str:
            text = "text"
        elif self.kind is tuple:
            text = "a list"
        elif issubclass(self.kind, Mapping):
            text = "a mapping of name: value"
        else:
            text = f"a {self.kind.__name__}"
        return text + (" or null" if self.optional else "")

    def check(self, value: object) -> None:
        """Raise :class:`ConfigError` unless ``value`` is valid for this field."""
        if value is None and self.optional:
            return
        if not self._valid(value):
            hint = f" ({self.setting.hint})" if self.setting.hint else ""
            verb = "is not" if self.choices and isinstance(value, str) else "must be"
            raise ConfigError(f"`{self.name}`={value!r} {verb} {self.expected()}{hint}")

    def _valid(self, value: object) -> bool:
        kind, s = self.kind, self.setting
        if kind is bool:
            return isinstance(value, bool)
        if kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False
            if kind is int and not isinstance(value, int):
                return False
            if s.finite and not math.isfinite(value):
                return False
            if s.low is not None and (value < s.low or (s.low_open and value == s.low)):
                return False
            return s.high is None or value <= s.high
        if self.choices:
            return value in self.choices
        return isinstance(value, kind)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _kind(hint: Any) -> tuple[type, bool, tuple[str, ...]]:  # noqa: ANN401 - a type hint
    """(kind, optional, choices) of a type annotation."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        (hint,) = args
    if typing.get_origin(hint) is Literal:
        return str, optional, tuple(str(a) for a in typing.get_args(hint))
    origin = typing.get_origin(hint)
    if origin is not None:
        return (Mapping if issubclass(origin, Mapping) else origin), optional, ()
    return hint, optional, ()


_SPECS: dict[type, tuple[FieldSpec, ...]] = {}


def field_specs(cls: type) -> tuple[FieldSpec, ...]:
    """The user settings of a config dataclass, in field order."""
    if cls in _SPECS:
        return _SPECS[cls]
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        if KEY not in f.metadata:
            continue  # internal (set by code, not by users)
        kind, optional, choices = _kind(hints[f.name])
        default = f.default
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        specs.append(FieldSpec(f.name, kind, optional, choices, default, f.metadata[KEY]))
    _SPECS[cls] = tuple(specs)
    return _SPECS[cls]


def check_fields(config: object) -> None:
    """Validate every user setting of a config dataclass instance (its kind and bounds)."""
    for spec in field_specs(type(config)):
        spec.check(getattr(config, spec.name))


def convert(spec: FieldSpec, value: Any) -> Any:  # noqa: ANN401 - any setting's value
    """A value from text or YAML data as the field holds it: parsed text, paths, tuples."""
    if isinstance(value, list | tuple) and spec.setting.parse is not None:
        value = ",".join(str(v) for v in value)
    if isinstance(value, str) and spec.setting.parse is not None:
        return spec.setting.parse(value)
    if isinstance(value, str) and spec.kind is Path:
        return Path(value)
    if isinstance(value, list) and spec.kind is tuple:
        return tuple(value)
    return value


def from_mapping[C](cls: type[C], raw: Mapping[str, Any], source: str = "config") -> C:
    """Build a config from plain data (a YAML mapping), validating keys and values.

    Args:
        cls: the config dataclass.
        raw: setting names to values; text is parsed as the command line parses it.
        source: where the data came from (a file name), for error messages.

    Raises:
        ConfigError: an unknown key, a missing required setting or an invalid value; the
            message names the key and the fix on one line.
    """
    specs = {s.name: s for s in field_specs(cls)}
    for key in raw:
        if key not in specs:
            close = difflib.get_close_matches(str(key), specs, n=1)
            fix = f"did you mean `{close[0]}`?" if close else "known: " + ", ".join(specs)
            raise ConfigError(f"{source}: unknown setting `{key}`; {fix}")
    missing = [name for name, s in specs.items() if s.required and raw.get(name) is None]
    if missing:
        raise ConfigError(
            f"{source}: missing " + ", ".join(f"`{m}`" for m in missing) + "; give a value"
        )
    try:
        values = {k: convert(specs[k], v) for k, v in raw.items()}
        return cls(**values)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from err


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in a YAML file (empty when the file holds nothing).

    Raises:
        ConfigError: the file cannot be read, is not YAML, or does not hold a mapping.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(
            f"`config`={str(path)!r} cannot be read ({err}); pass a YAML file"
        ) from err
    except yaml.YAMLError as err:
        first = " ".join(str(err).split())
        raise ConfigError(f"`config`={str(path)!r} is not valid YAML ({first})") from err
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"`config`={str(path)!r} must hold a mapping of setting: value")
    return dict(raw)


def cli_specs(cls: type) -> Iterator[FieldSpec]:
    """The settings of a config that the command line offers."""
    return (s for s in field_specs(cls) if s.setting.cli)
