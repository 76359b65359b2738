"""The README's annotated tree names every module under ``src/``, and no module that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tree_modules(readme: str) -> set[str]:
    """Return the ``src/...py`` paths the ``## Repository layout`` tree names.

    An entry is a line's first word when it ends in ``.py`` or ``/``; its folder comes from
    the entries above it with less indentation (two spaces a level). Wrapped descriptions
    (whose first word is neither) are skipped.
    """
    section = readme.split("## Repository layout", 1)[1]
    block = section.split("```", 2)[1]
    folders: list[str] = []
    named: set[str] = set()
    for line in block.splitlines():
        match = re.match(r"( *)(\S+)", line)
        if match is None:
            continue
        level, word = len(match.group(1)) // 2, match.group(2)
        if not word.endswith(("/", ".py")):
            continue
        folders = folders[:level]
        if word.endswith("/"):
            folders.append(word)
        else:
            named.add("".join(folders) + word)
    return {path for path in named if path.startswith("src/")}


def test_the_tree_reads_nested_entries() -> None:
    readme = (
        "## Repository layout\n\n```\nsrc/pkg/       the package\n  a.py   A\n  sub/   S\n"
        "    b.py   B\n                 wrapped description.py\n  c.py   C\nother.py  x\n```\n"
    )
    assert tree_modules(readme) == {"src/pkg/a.py", "src/pkg/sub/b.py", "src/pkg/c.py"}


def test_readme_tree_names_every_module_of_src() -> None:
    on_disk = {path.relative_to(ROOT).as_posix() for path in (ROOT / "src").rglob("*.py")}
    named = tree_modules((ROOT / "README.md").read_text(encoding="utf-8"))
    assert not sorted(on_disk - named), (
        f"modules missing from README's tree: {sorted(on_disk - named)}"
    )
    assert not sorted(named - on_disk), (
        f"README's tree names modules that are gone: {sorted(named - on_disk)}"
    )
