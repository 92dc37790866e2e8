#!/bin/bash
# A model that outlives its timeout: the run must be recorded as TIMEOUT.
seconds=600
[ "$1" = "--sleep" ] && seconds=$2
echo "sleeping ${seconds}s"
sleep "$seconds"
echo "performance: 1.0 samples_per_second"
