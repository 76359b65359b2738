"""Read JSON with comments (devcontainer.json's dialect): `//` and `/* */` outside strings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def strip_comments(text: str) -> str:
    """Return ``text`` with its comments replaced by spaces (newlines kept, so errors keep
    their line numbers). Comment markers inside strings, such as URLs, are left alone.
    Trailing commas are not removed: the devcontainer schema does not allow them.
    """
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        ch = text[i]
        if in_string:
            out.append(ch)
            if ch == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if ch == '"':
                in_string = False
            i += 1
        elif ch == '"':
            in_string = True
            out.append(ch)
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end == -1 else end
            out.append(" " * (end - i))
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end == -1:
                raise ValueError(f"unterminated /* comment at offset {i}")
            out.append("".join(c if c == "\n" else " " for c in text[i : end + 2]))
            i = end + 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def load(path: Path) -> Any:
    """Parse a JSON-with-comments file."""
    return json.loads(strip_comments(path.read_text(encoding="utf-8")))
