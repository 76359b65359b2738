"""`nox -s train`: reproduce the pipeline; a run on changed parameters is all or nothing.

`dvc exp run -S ...` writes the changed parameters into configs/params.yaml before the stages
run; a failed run used to leave them (and dvc.lock) there, so the next build failed too. Here
the files it may change are kept first and put back, with the outputs they name, on failure.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from churn_ops.shell import Session
from churn_ops.stack import REPO_ROOT

#: What a run on changed parameters may change in the workspace, besides DVC's outputs.
WATCHED = ("configs/params.yaml", "dvc.lock")


def sets_params(args: list[str]) -> bool:
    """Tell whether the arguments change parameters (`-S`/`--set-param`)."""
    return any(a == "-S" or a.startswith(("-S", "--set-param")) for a in args)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Return the bytes of each watched file (None where it does not exist)."""
    return {rel: (root / rel).read_bytes() if (root / rel).exists() else None for rel in WATCHED}


def restore(root: Path, saved: dict[str, bytes | None]) -> list[str]:
    """Put the watched files back as saved; return those that had changed."""
    changed = []
    for rel, content in saved.items():
        path = root / rel
        now = path.read_bytes() if path.exists() else None
        if now == content:
            continue
        changed.append(rel)
        if content is None:
            path.unlink()
        else:
            path.write_bytes(content)
    return changed


def changes(root: Path, saved: dict[str, bytes | None]) -> list[str]:
    """Return the changed lines of the watched text files as a unified diff."""
    lines: list[str] = []
    for rel, content in saved.items():
        path = root / rel
        old = (content or b"").decode("utf-8", "replace").splitlines()
        new = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        if rel == "dvc.lock":
            if old != new:
                lines.append("dvc.lock: updated to the new outputs")
            continue
        diff = difflib.unified_diff(old, new, f"{rel} (before)", f"{rel} (now)", n=0, lineterm="")
        lines += [d for d in diff if not d.startswith("@@")]
    return lines


def train(session: Session, args: list[str], root: Path = REPO_ROOT) -> None:
    """Run `dvc repro`, or `dvc exp run` when parameters change; roll back a failed one."""
    if not sets_params(args):
        session.run("dvc", "repro", *args)
        return
    saved = snapshot(root)
    try:
        session.run("dvc", "exp", "run", *args)
    except Exception:
        put_back = restore(root, saved)
        if put_back:
            # The outputs the restored dvc.lock names are in the DVC cache.
            session.run("dvc", "checkout", "--quiet", "--force", success_codes=[0, 1, 255])
        where = ", ".join(put_back) or "nothing had changed"
        session.error(f"The run failed (see above); the workspace is as it was ({where} restored).")
    shown = "\n  ".join(changes(root, saved)) or "(no parameter changed)"
    session.log(
        f"The run changed the workspace:\n  {shown}\n"
        "To go back to the generated data: `git checkout configs/params.yaml dvc.lock && "
        "dvc checkout` (or `nox -s train -- -S 'configs/params.yaml:data.source='`)."
    )
