"""The repository's `.env`: read it the way Compose does; a variable set in the shell wins."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path


def parse(text: str) -> dict[str, str]:
    """Return the ``NAME=value`` lines of a .env text (comments, blanks, ``export`` allowed).

    A value in matching single or double quotes loses them; a ``#`` after a space starts a
    comment in an unquoted value, as in Compose.
    """
    found: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        name, sep, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name.isidentifier():
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        found[name] = value
    return found


def apply(path: Path, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the variables of the .env at ``path`` that the environment lacks; return those set.

    A missing file changes nothing. The shell wins: a variable already set is left alone.
    """
    target = os.environ if environ is None else environ
    if not path.is_file():
        return {}
    applied = {k: v for k, v in parse(path.read_text(encoding="utf-8")).items() if k not in target}
    target.update(applied)
    return applied
