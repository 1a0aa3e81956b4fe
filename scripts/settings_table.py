"""Print the README's configuration table from dungeon.settings.SETTINGS."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dungeon.settings import SETTINGS  # noqa: E402


def _default(value) -> str:
    if value is None:
        return "unset"
    if isinstance(value, list):
        return "`" + ",".join(value) + "`" if value else "empty"
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def main() -> None:
    print("| variable | default | meaning |")
    print("|---|---|---|")
    for setting in SETTINGS:
        print(f"| `DUNGEON_{setting.name}` | {_default(setting.default)} | {setting.help} |")


if __name__ == "__main__":
    main()
