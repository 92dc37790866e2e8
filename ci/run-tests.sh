#!/usr/bin/env bash
# Set up this machine (idempotent) and run the whole test suite against the installed collection:
# ruff, ansible-lint (production profile, offline), ansible-test sanity, pytest (unit, module,
# integration and end-to-end tests on a real Docker engine and registry) and the benchmarks.
#
# Environment: MADCI_KEEP=1 keeps the work directory; PYTEST_ARGS adds pytest arguments;
#              MADCI_GATES limits the gates run (default: "ruff lint sanity pytest bench").
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/.." && pwd)
export MADCI_VENV=${MADCI_VENV:-/opt/madci/venv}
export MADCI_DEPS=${MADCI_DEPS:-/opt/madci/collections}
GATES=${MADCI_GATES:-ruff lint sanity pytest bench}

"$HERE/setup-host.sh" || exit 1
"$HERE/venv.sh" || exit 1
"$HERE/libvirtd.sh" || exit 1
# The real Debian guest images of the VM tests: built once (about 2 minutes), then reused until
# ci/guest-image.sh changes.
guest_start=$SECONDS
"$HERE/guest-image.sh" || exit 1
echo "[tests] guest images ready in $((SECONDS - guest_start)) s"

WORK=$(mktemp -d /tmp/madci-test.XXXXXX)
[ "${MADCI_KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
export PATH=$MADCI_VENV/bin:$PATH ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 ANSIBLE_NOCOLOR=1
INSTALLED=$WORK/collections
TARBALL=$("$HERE/install-collection.sh" "$INSTALLED" "$WORK/dist") || exit 1
export MADCI_TARBALL=$TARBALL MADCI_INSTALLED=$INSTALLED
export ANSIBLE_COLLECTIONS_PATH=$INSTALLED:$MADCI_DEPS
echo "[tests] installed $(basename "$TARBALL") into $INSTALLED"
# The AWX execution environment of that tarball (ansible-builder on a Debian base made here): the base is
# cached by its recipe, the image by the collection's content; a changed collection rebuilds from the
# base's cached layers (about 2 minutes).
ee_start=$SECONDS
MADCI_EE_IMAGE=$("$HERE/ee-image.sh" --tarball "$TARBALL") || exit 1
export MADCI_EE_IMAGE
echo "[tests] execution environment $MADCI_EE_IMAGE ready in $((SECONDS - ee_start)) s"

declare -A RESULT TIME
run_gate() {
  local name=$1; shift
  local start=$SECONDS
  echo "================ $name ================"
  "$@"; local rc=$?
  RESULT[$name]=$rc; TIME[$name]=$((SECONDS - start))
}

# shellcheck disable=SC2317  # the gate functions are called through run_gate
gate_ruff() { (cd "$SRC" && ruff check . && shellcheck -S warning ci/*.sh .ci/run); }
# A private HOME: collections a user installed under ~/.ansible must not shadow the tarball.
gate_lint() { (cd "$SRC" && HOME=$WORK/lint-home ansible-lint --offline); }
gate_sanity() {
  # ansible-test needs the collection under .../ansible_collections/rocm/madengine: the installed copy is.
  local pyver
  pyver=$("$MADCI_VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  (cd "$INSTALLED/ansible_collections/rocm/madengine" && ansible-test sanity --venv --python "$pyver" ${SANITY_ARGS:-})
}
gate_pytest() {
  (cd "$SRC" && python -m pytest -p no:cacheprovider ${PYTEST_ARGS:-} tests)
}

# Benchmarks listed in benchmarks/open-targets run with the arguments given there; their miss is reported, not
# failed (the list says why each target is still open).  Exit status 3: what could be measured met its target, but a
# target could not be checked on this machine (a reference tool is missing): reported, neither a pass nor a failure.
gate_bench() {
  local rc=0 script name open args status
  for script in "$SRC"/benchmarks/*/bench_*.py; do
    name=${script#"$SRC"/benchmarks/}
    open=$(grep -E "^${name//./\\.}( |$)" "$SRC/benchmarks/open-targets" || true)
    args=$(printf '%s' "${open%%#*}" | cut -s -d' ' -f2-)
    echo "---- $name $args"
    # shellcheck disable=SC2086  # the arguments of open-targets are words
    python "$script" $args; status=$?
    if [ "$status" = 0 ]; then
      [ -z "$open" ] || echo "[bench] $name meets its target now: remove it from benchmarks/open-targets"
    elif [ "$status" = 3 ]; then
      echo "[bench] $name: a target could not be checked on this machine (see its output)"
    elif [ -n "$open" ]; then
      echo "[bench] $name: target open (benchmarks/open-targets)"
    else
      rc=1
    fi
  done
  return $rc
}

for g in $GATES; do run_gate "$g" "gate_$g"; done

echo "================ summary ================"
rc=0
for g in $GATES; do
  status=PASS; [ "${RESULT[$g]}" = 0 ] || { status=FAIL; rc=1; }
  printf '%-8s %s  %4ss\n' "$g" "$status" "${TIME[$g]}"
done
exit $rc
