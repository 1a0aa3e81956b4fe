from pathlib import Path

from dungeon.settings import SETTINGS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_documents_every_setting():
    missing = [s.name for s in SETTINGS if f"`DUNGEON_{s.name}`" not in README]
    assert missing == []


def test_readme_quick_start_has_exactly_two_commands():
    block = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    assert commands[1].endswith("-m pytest")
