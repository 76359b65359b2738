"""Every command of docs/learn.md, run as printed and in order, against the running main stack.

The page promises its commands work as written: each ```bash block after the first (the main
job itself, which `nox -s build up smoke` has just run) runs in bash from the repository root
and must exit 0, and the ``<!-- expect: REGEX -->`` line after it names what its output shows.
Run by `nox -s learn` (CI runs it after the main job).
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "learn.md"
TOPICS = (
    "Images versus containers", "build cache", ".dockerignore", "Logging", "networks",
    "curl", "Automated", "Publishing", "many containers", "Volumes",
)  # fmt: skip


@dataclass(frozen=True)
class Block:
    """One shell block of the page: its section, its commands, and what its output must show."""

    heading: str
    code: str
    expect: str | None


def page_blocks(text: str) -> list[Block]:
    """Return the page's bash blocks in order, each with its section and expectation."""
    found = []
    for match in re.finditer(r"```bash\n(.*?)```\n", text, re.S):
        headings = re.findall(r"^#+ (.+)$", text[: match.start()], re.M)
        after = text[match.end() :].split("```", 1)[0]
        expect = re.search(r"<!-- expect: (.*?) -->", after)
        heading = headings[-1] if headings else ""
        found.append(Block(heading, match.group(1), expect.group(1) if expect else None))
    return found


BLOCKS = page_blocks(PAGE.read_text(encoding="utf-8"))


def test_the_page_covers_each_topic_and_says_what_to_look_for() -> None:
    assert BLOCKS[0].code.strip() == "nox -s build up smoke"
    for topic in TOPICS:
        assert any(topic.lower() in b.heading.lower() for b in BLOCKS[1:]), topic
    assert all(b.expect for b in BLOCKS[1:]), "every block after the first says what to look for"


@pytest.mark.parametrize("block", BLOCKS[1:], ids=[b.heading for b in BLOCKS[1:]])
def test_the_commands_work_as_printed(block: Block) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOX", "PYTEST"))}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.code],  # noqa: S607 - the page's own commands
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    shown = done.stdout + done.stderr
    assert done.returncode == 0, f"{block.heading}: exit {done.returncode}\n{shown[-4000:]}"
    assert block.expect is not None
    assert re.search(block.expect, shown), (
        f"{block.heading}: no {block.expect!r} in\n{shown[-4000:]}"
    )
