#!/usr/bin/env bash
# Runs once when the dev container (or codespace) is created: installs the tools the nox
# sessions drive, then prints the next command. Safe to run again.
#
#   bash .devcontainer/post-create.sh
#
# What it installs:
#   - nox and uv, pinned in requirements/tools.txt, in their own virtualenv, linked onto PATH;
#   - the development environment from requirements/dev.lock (`nox -s tests --install-only`),
#     so the first `nox -s tests` or `nox -s build` does not wait for it;
#   - Chromium and its driver from Debian packages, for `nox -s browser`.
# Docker and Compose come from the devcontainer's docker-in-docker feature, not from here.
#
# Settings (environment):
#   CHURN_TOOLS_HOME    where the tools' virtualenv goes (default ~/.local/share/churn-prediction/tools)
#   CHURN_SKIP_DEV_ENV  set to 1 to skip the development environment
#   CHURN_SKIP_BROWSER  set to 1 to skip Chromium
set -euo pipefail

started=$(date +%s)
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

say() { printf '\n== [%3d s] %s\n' "$(($(date +%s) - started))" "$*"; }
warn() { printf 'post-create: %s\n' "$*" >&2; }

# Root runs apt-get itself; another user needs password-less sudo (the Codespaces user has it).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo "$@"
  else
    return 1
  fi
}

# ---------------------------------------------------------------------------- nox and uv
say "nox and uv (requirements/tools.txt)"
tools_home=${CHURN_TOOLS_HOME:-$HOME/.local/share/churn-prediction/tools}
if [ ! -x "$tools_home/bin/python" ]; then
  python3 -m venv "$tools_home"
fi
"$tools_home/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements/tools.txt

# Link the commands into a folder on PATH: ~/.local/bin where the shell has it (the Codespaces
# user does), else /usr/local/bin when writable (root in a bare container), else ~/.local/bin
# with a hint.
case ":$PATH:" in
  *":$HOME/.local/bin:"*) bin_dir=$HOME/.local/bin ;;
  *) if [ -w /usr/local/bin ]; then bin_dir=/usr/local/bin; else bin_dir=$HOME/.local/bin; fi ;;
esac
mkdir -p "$bin_dir"
for tool in nox uv; do
  ln -sf "$tools_home/bin/$tool" "$bin_dir/$tool"
done
case ":$PATH:" in
  *":$bin_dir:"*) ;;
  *) warn "$bin_dir is not on PATH: add it (export PATH=\"$bin_dir:\$PATH\") to run nox" ;;
esac
export PATH="$bin_dir:$PATH"
echo "nox $(nox --version 2>&1), $(uv --version) -> $bin_dir"

# ---------------------------------------------------------------------------- dev environment
if [ "${CHURN_SKIP_DEV_ENV:-0}" != 1 ]; then
  say "development environment (requirements/dev.lock) for the nox sessions"
  nox --non-interactive -s tests --install-only
else
  say "development environment skipped (CHURN_SKIP_DEV_ENV=1)"
fi

# ---------------------------------------------------------------------------- Chromium
if [ "${CHURN_SKIP_BROWSER:-0}" = 1 ]; then
  say "Chromium skipped (CHURN_SKIP_BROWSER=1)"
elif command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  say "Chromium: already installed"
else
  say "Chromium and chromedriver (Debian packages) for nox -s browser"
  if as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      chromium chromium-driver >/dev/null; then
    as_root apt-get clean || true
  else
    warn "could not install Chromium (needs root or password-less sudo); nox -s browser will say how"
  fi
fi
if command -v chromium >/dev/null; then
  chromium --version 2>/dev/null || true
fi

# ---------------------------------------------------------------------------- Docker
say "Docker"
if ! command -v docker >/dev/null; then
  warn "no docker command: in Codespaces the docker-in-docker feature provides it (rebuild the container)"
elif docker info --format 'engine {{.ServerVersion}}' 2>/dev/null; then
  docker compose version 2>/dev/null || docker-compose version --short 2>/dev/null || warn "no Compose found"
else
  warn "the Docker engine does not answer yet; it starts with the container (try again in a moment)"
fi

say "ready. Next:"
cat <<'EOF'
  nox -s build up smoke     # artifacts, images, the stack (ports 5000 and 5001), smoke tests
  nox -s browser            # the same pages in headless Chromium, screenshots in results/
  nox -l                    # every session
EOF
