#!/usr/bin/env bash
# Create (or reuse) the controller venv with pinned dependencies, the collections the tests use
# (taken from the `ansible` wheel on PyPI: no Galaxy server is needed), and ansible-test's
# offline pip bootstrap. Idempotent.
#
# Environment: MADCI_VENV (default /opt/madci/venv), MADCI_DEPS (default /opt/madci/collections)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
MADCI_VENV=${MADCI_VENV:-/opt/madci/venv}
MADCI_DEPS=${MADCI_DEPS:-/opt/madci/collections}
ANSIBLE_BUNDLE=${ANSIBLE_BUNDLE:-ansible==14.5.0}

say() { printf '[venv] %s\n' "$*"; }

pick_python() {
  for c in "${MADCI_PYTHON:-}" python3.12 /root/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12 python3; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  echo "no Python >= 3.11 found" >&2; return 1
}

stamp=$MADCI_VENV/.madci-requirements
want=$( { cat "$HERE/requirements-test.txt"; cat "$HERE/constraints.txt" 2>/dev/null || true; } | sha256sum | cut -d" " -f1)
if [ -x "$MADCI_VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  say "reusing $MADCI_VENV"
else
  PY=$(pick_python)
  say "creating $MADCI_VENV with $("$PY" --version)"
  [ -x "$MADCI_VENV/bin/python" ] || "$PY" -m venv "$MADCI_VENV"
  "$MADCI_VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip
  cons=()
  pyver=$("$MADCI_VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  # The pins were resolved on Python 3.12; another Python resolves its own versions.
  if [ -f "$HERE/constraints.txt" ] && [ "$pyver" = 3.12 ]; then cons=(-c "$HERE/constraints.txt"); fi
  "$MADCI_VENV/bin/pip" install -q --disable-pip-version-check "${cons[@]}" -r "$HERE/requirements-test.txt"
  echo "$want" >"$stamp"
fi

# Collections used by the tests and roles, without Galaxy.
if [ ! -d "$MADCI_DEPS/ansible_collections/community/docker" ] || [ ! -d "$MADCI_DEPS/ansible_collections/ansible/posix" ]; then
  W=$(mktemp -d)
  "$MADCI_VENV/bin/pip" download -q --disable-pip-version-check --no-deps "$ANSIBLE_BUNDLE" -d "$W"
  "$MADCI_VENV/bin/python" - "$W" "$MADCI_DEPS" <<'PY'
import glob
import sys
import zipfile

wheel = zipfile.ZipFile(glob.glob(sys.argv[1] + "/ansible-*.whl")[0])
keep = tuple("ansible_collections/%s/" % c for c in (
    "community/docker", "community/library_inventory_filtering_v1", "ansible/posix"))
wheel.extractall(sys.argv[2], [n for n in wheel.namelist() if n.startswith(keep)])
PY
  rm -rf "$W"
  say "extracted community.docker and ansible.posix into $MADCI_DEPS"
fi

# ansible-test bootstraps pip from a host outside PyPI; this stand-in uses ensurepip and PyPI.
AT=$("$MADCI_VENV/bin/python" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')
PIPV=$(grep -oP "pip='\K[0-9.]+" "$AT/_internal/python_requirements.py" || true)
if [ -n "$PIPV" ]; then
  mkdir -p ~/.ansible/test/cache
  cat >~/.ansible/test/cache/"get_pip_${PIPV//./_}.py" <<'PY'
"""Offline stand-in for ansible-test's get-pip bootstrap: ensurepip, then pip from PyPI."""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"], stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, "-m", "pip", "install", "--upgrade"] + args)
PY
fi
say "ready: $("$MADCI_VENV/bin/ansible" --version | head -1)"
