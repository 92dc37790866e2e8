#!/usr/bin/env bash
# Set up this machine (idempotent), install the collection and run the main job on the embedded
# default: benchmark.yml on inventories/local (this machine is the controller and the only node, CPU
# mode, the bundled sample catalogue, the registry on localhost:5000), from the repository root, then
# print where the merged CSV and the HTML report are. Arguments go to ansible-playbook
# (e.g. --check, -e madengine_rerun_failed=true).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/.." && pwd)
export MADCI_VENV=${MADCI_VENV:-/opt/madci/venv}
export MADCI_DEPS=${MADCI_DEPS:-/opt/madci/collections}
"$HERE/setup-host.sh"
"$HERE/venv.sh"
"$HERE/install-collection.sh" "$MADCI_DEPS" >/dev/null
export PATH=$MADCI_VENV/bin:$PATH ANSIBLE_COLLECTIONS_PATH=$MADCI_DEPS
cd "$SRC"
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
rc=0
ansible-playbook -i inventories/local rocm.madengine.benchmark "$@" | tee "$LOG" || rc=$?
# the play's last step prints "CSV: <path>" and "HTML: <path>"
csv=$(grep -o '"CSV: [^"]*"' "$LOG" | tail -1 | sed -e 's/^"CSV: //' -e 's/"$//') || true
html=$(grep -o '"HTML: [^"]*"' "$LOG" | tail -1 | sed -e 's/^"HTML: //' -e 's/"$//') || true
if [ -n "$csv" ]; then
  echo
  echo "Results of the benchmark:"
  echo "  CSV:  $csv"
  echo "  HTML: $html"
fi
exit "$rc"
