#!/usr/bin/env bash
# Fetch the Debian packages whose real data the embedded mini suite uses, and extract them
# (no root needed) into $GAIA_BENCH_SOURCES or ~/.local/share/gaia-bench/sources.
# Already-present data (installed by apt, or extracted before) is left alone. A package that cannot
# be fetched stops the set-up with the fix: `make test` must never go green without the data.
set -euo pipefail
dest="${GAIA_BENCH_SOURCES:-${XDG_DATA_HOME:-$HOME/.local/share}/gaia-bench/sources}"
mkdir -p "$dest"
fetch() {  # package, a path inside it that proves it is there
  local package=$1 probe=$2
  if [ -e "/$probe" ] || [ -e "$dest/$probe" ]; then return 0; fi
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download "$package" >/dev/null 2>&1) || {
    echo "error: could not download Debian package $package (the mini suite's real photos)." >&2
    echo "  fix: reach the Debian registry and run \`make sources\`, or \`apt-get install $package\`" >&2
    rm -rf "$tmp"; exit 1; }
  dpkg-deb -x "$tmp"/*.deb "$dest"
  rm -rf "$tmp"
  echo "extracted $package into $dest"
}
fetch dataset-fashion-mnist usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
