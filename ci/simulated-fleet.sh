#!/usr/bin/env bash
# A fleet of simulated GPU nodes on this machine, for tests, benchmarks and trying a catalogue on a mixed
# fleet without GPUs (docs/simulated-fleet.md):
#
#   ci/simulated-fleet.sh up [--ssh] --out DIR KIND[:COUNT]...   start it (again: completes it), write DIR/inventory.yml
#   ci/simulated-fleet.sh down DIR                               remove everything it made
#   ci/simulated-fleet.sh image                                  build the SSH nodes' image unless cached
#
# Kinds: amd-gfx942, amd-gfx90a, nvidia-h100, cpu. Needs root, the Docker engine and registry of
# ci/setup-host.sh; --ssh also mmdebstrap and iptables. The work is done by ci/simfleet (Python 3,
# standard library only).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${MADFLEET_PYTHON:-python3}
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1
exec "$PYTHON" -c 'import sys; from simfleet.fleet import main; sys.exit(main(sys.argv[1:]))' "$@"
