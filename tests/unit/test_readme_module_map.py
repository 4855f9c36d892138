"""The README's module map names every module of the package, under its folder, and
nothing that is not there: a newcomer reads the map before the code."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "controller" / "modelsync"


def mapped() -> set[tuple[str, str]]:
    lines = (REPO / "README.md").read_text().splitlines()
    start = lines.index("| module | what it does | pure? |")
    found: set[tuple[str, str]] = set()
    folder = ""
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        first = line.split("|")[1]
        heading = re.fullmatch(r"\s*\*\*`(\w+)/`\*\*\s*", first)
        if heading:
            folder = heading.group(1)
            continue
        found |= {(folder, name) for name in re.findall(r"`(\w+\.py)`", first)}
    return found


def test_the_readme_module_map_is_the_package() -> None:
    modules = {
        (path.parent.name, path.name)
        for path in PACKAGE.glob("*/*.py")
        if path.name != "__init__.py"
    }
    on_map = mapped()
    assert modules - on_map == set(), "modules the README's map does not name"
    assert on_map - modules == set(), "the README's map names modules that do not exist"
