"""Write the README's configuration table from dungeon.settings.SETTINGS.

    python scripts/settings_table.py            # print the table
    python scripts/settings_table.py --write    # replace the table in README.md
"""

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


def table() -> str:
    """Return the configuration table in Markdown."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `DUNGEON_{s.name}` | {_default(s.default)} | {s.help} |" for s in SETTINGS]
    return "\n".join(rows) + "\n"


def main() -> None:
    if "--write" not in sys.argv:
        print(table(), end="")
        return
    readme = Path(__file__).resolve().parent.parent / "README.md"
    text = readme.read_text()
    start = text.index("| variable | default | meaning |")
    end = text.index("\n\n", start) + 1
    readme.write_text(text[:start] + table() + text[end:])


if __name__ == "__main__":
    main()
