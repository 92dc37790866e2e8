#!/usr/bin/env bash
# Set up this machine (idempotent), install the collection and run the main job on the embedded
# default: discovery of the bundled sample catalogue.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export MADCI_VENV=${MADCI_VENV:-/opt/madci/venv}
export MADCI_DEPS=${MADCI_DEPS:-/opt/madci/collections}
"$HERE/setup-host.sh"
"$HERE/venv.sh"
"$HERE/install-collection.sh" "$MADCI_DEPS" >/dev/null
export PATH=$MADCI_VENV/bin:$PATH ANSIBLE_COLLECTIONS_PATH=$MADCI_DEPS
SAMPLE=$MADCI_DEPS/ansible_collections/rocm/madengine/examples/sample_mad
ansible localhost -m rocm.madengine.madengine_discover -a "mad_root=$SAMPLE tags=all"
