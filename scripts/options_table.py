"""Write the README's option tables from the config fields (geocam.options), or check them.

    python scripts/options_table.py           # rewrite the tables in README.md
    python scripts/options_table.py --check   # exit 1 when README.md's tables are stale

Each table stands between ``<!-- options:NAME -->`` and ``<!-- /options:NAME -->``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from geocam.config import SceneConfig
from geocam.options import FieldSpec, field_specs
from geocam.training.config import EvaluateConfig, TrainConfig

README = Path(__file__).resolve().parents[1] / "README.md"
TABLES: dict[str, type] = {"run": SceneConfig, "train": TrainConfig, "evaluate": EvaluateConfig}


def _option(spec: FieldSpec) -> str:
    if not spec.setting.cli:
        return "(YAML only)"
    if spec.kind is bool and spec.setting.negatable:
        return f"`{spec.flag}`, `--no-{spec.flag[2:]}`"
    if spec.choices:
        return f"`{spec.flag} {'\\|'.join(spec.choices)}`"
    return f"`{spec.flag}`"


def table(cls: type) -> str:
    """The markdown table of a config's settings."""
    rows = ["| option | YAML key | default | meaning |", "| --- | --- | --- | --- |"]
    for spec in field_specs(cls):
        default = "required" if spec.required else spec.default_text
        help_text = spec.setting.help.replace("|", "\\|")
        rows.append(f"| {_option(spec)} | `{spec.name}` | {default} | {help_text} |")
    return "\n".join(rows)


def render(text: str) -> str:
    """``text`` (the README) with every options table regenerated."""
    for name, cls in TABLES.items():
        pattern = re.compile(rf"(<!-- options:{name} -->\n)(?:.*?\n)?(<!-- /options:{name} -->)", re.DOTALL)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- options:{name} --> block")
        text = pattern.sub(lambda m, c=cls: m.group(1) + table(c) + "\n" + m.group(2), text)
    return text


def main(argv: list[str]) -> int:
    """Rewrite README.md, or with ``--check`` say whether it is current."""
    current = README.read_text()
    wanted = render(current)
    if "--check" in argv:
        if wanted != current:
            print("README.md option tables are stale: run python scripts/options_table.py")  # noqa: T201
            return 1
        return 0
    README.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
