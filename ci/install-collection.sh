#!/usr/bin/env bash
# Build the collection tarball from this checkout and install it offline into a collections path.
# usage: ci/install-collection.sh DEST_COLLECTIONS_DIR [DIST_DIR]
# Prints the tarball path. Needs the venv (ci/venv.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/.." && pwd)
DEST=${1:?destination collections directory}
DIST=${2:-$(mktemp -d)}
MADCI_VENV=${MADCI_VENV:-/opt/madci/venv}
mkdir -p "$DEST" "$DIST"
# Build from a clean export: files the checkout ignores (caches, results) never reach the tarball.
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
if git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
  # tracked and new (not ignored) files, as they are on disk
  (cd "$SRC" && git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
     [ -e "$f" ] && printf '%s\0' "$f"; done | tar --null -T - -cf -) | tar -C "$STAGE" -xf -
else
  tar -C "$SRC" --exclude=.git --exclude=__pycache__ -cf - . | tar -C "$STAGE" -xf -
fi
"$MADCI_VENV/bin/ansible-galaxy" collection build --force --output-path "$DIST" "$STAGE" >/dev/null
TARBALL=$(find "$DIST" -maxdepth 1 -name "rocm-madengine-*.tar.gz" -newer "$STAGE" | head -1)
"$MADCI_VENV/bin/ansible-galaxy" collection install --offline --no-deps --force -p "$DEST" "$TARBALL" >/dev/null
echo "$TARBALL"
