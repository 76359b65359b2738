#!/usr/bin/env bash
# Build a stand-in for python:3.12-slim from Debian packages, for hosts that cannot pull images.
#
# Usage: docker/standin-base.sh IMAGE_TAG
#
# It debootstraps a minimal Debian bookworm with Python 3.11 from the mirror this host's apt is
# configured with, copies the host's CA bundle in (so that pip inside a build reaches the package
# index through a TLS-intercepting proxy, if the host has one), and turns it into an image with
# `docker import`. Needs root and debootstrap (apt-get install debootstrap).
set -euo pipefail

tag=${1:?usage: standin-base.sh IMAGE_TAG}
suite=${STANDIN_SUITE:-bookworm}
host_ca=${STANDIN_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

# The mirror: the first URI of apt's configured Debian archive (deb822 .sources first, then
# the one-line format), unless STANDIN_MIRROR says otherwise.
find_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) {print $i; exit}}' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^https?:.*\/debian\/?$/) {print $i; exit}}' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
}
mirror=${STANDIN_MIRROR:-$(find_mirror)}
if [ -z "$mirror" ]; then
  echo "standin-base: no Debian mirror found in apt's sources; set STANDIN_MIRROR" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null; then
  echo "standin-base: debootstrap is missing: apt-get install -y debootstrap" >&2
  exit 1
fi

work=$(mktemp -d /tmp/churn-standin.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

# A mirror sometimes drops one download ("Couldn't download packages"): try again from scratch,
# a few times, before giving up with the log's tail.
attempts=${STANDIN_ATTEMPTS:-3}
for attempt in $(seq 1 "$attempts"); do
  echo "standin-base: debootstrap $suite from $mirror (about a minute; attempt $attempt of $attempts)"
  rm -rf "$rootfs"
  if debootstrap --variant=minbase \
    --include=python3,python3-venv,ca-certificates,libgomp1 \
    "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
    break
  fi
  tail -n 5 "$work/debootstrap.log" >&2
  if [ "$attempt" -eq "$attempts" ]; then
    echo "standin-base: debootstrap failed $attempts times; the log's end is above" >&2
    exit 1
  fi
  sleep 5
done

# Trust what the host trusts (a TLS-intercepting proxy's CA among it).
if [ -f "$host_ca" ]; then
  cp "$host_ca" "$rootfs/usr/local/share/ca-certificates/host-ca-bundle.crt"
  chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 || true
fi

# python:3.12-slim has `python`; so does the stand-in.
ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"

# Slim it down: package cache, lists, docs, man pages, locales.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log "$rootfs"/tmp/*

ca=/etc/ssl/certs/ca-certificates.crt
tar -C "$rootfs" -c . | docker import \
  --change "ENV LANG=C.UTF-8" \
  --change "ENV PIP_CERT=$ca" \
  --change "ENV SSL_CERT_FILE=$ca" \
  --change "ENV REQUESTS_CA_BUNDLE=$ca" \
  --change "LABEL org.opencontainers.image.description=\"stand-in for python:3.12-slim built from Debian $suite packages\"" \
  --change 'CMD ["python3"]' \
  - "$tag" >/dev/null
echo "standin-base: built $tag ($(docker run --rm "$tag" python3 --version))"
