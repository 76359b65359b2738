"""Prepare the stack's bind-mounted data folders for its non-root services (uid 1000).

Run once, as root, by the `data-init` service of docker/docker-compose.yml before the servers
start, so that a by-hand `docker compose up` works on a fresh clone. There Docker creates a
missing bind-mount source (mlruns/, logs/) owned by root, and a uid-1000 server cannot write it.

    python3 prepare_data.py PROJECT_DIR DATA_DIR...

The host user is whoever owns PROJECT_DIR (the clone). For each DATA_DIR:
- made by Docker (owned by root) while the host user is not root: given to the host user, so
  it stays theirs to read and remove;
- owned by uid 1000: nothing to do (the services' own uid; the usual user in a Codespace);
- owned by root on a root's host (CI, a root shell): given to uid 1000, as `nox -s up` does;
- owned by another host user: opened to the services (folders 0777, files 0666), as
  `nox -s up` does; the MLflow server then creates files that this user can remove too.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

SERVICE_UID = 1000
SERVICE_GID = 1000


def _tree(path: Path) -> Iterator[Path]:
    yield path
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            yield Path(root) / name


def prepare(data_dir: Path, host_uid: int, host_gid: int) -> str:
    """Make one data folder writable by the services; return what was done, for the log."""
    data_dir.mkdir(parents=True, exist_ok=True)
    owner = data_dir.stat().st_uid
    if owner == 0 and host_uid != 0:
        os.chown(data_dir, host_uid, host_gid)
        owner = host_uid
    if owner == SERVICE_UID:
        return f"{data_dir}: owned by uid {SERVICE_UID}, ready"
    if owner == 0:
        for path in _tree(data_dir):
            os.chown(path, SERVICE_UID, SERVICE_GID, follow_symlinks=False)
        return f"{data_dir}: given to uid {SERVICE_UID}, the services' user"
    for path in _tree(data_dir):
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            path.chmod(stat.S_IMODE(mode) | 0o777)
        elif stat.S_ISREG(mode):
            path.chmod(stat.S_IMODE(mode) | 0o666)
    return f"{data_dir}: owned by host uid {owner}, opened to the services"


def main(argv: Sequence[str]) -> int:
    """Prepare every data folder named after the project folder; exit status 2 on bad usage."""
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    project = Path(argv[0]).stat()
    for name in argv[1:]:
        print(prepare(Path(name), project.st_uid, project.st_gid), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
