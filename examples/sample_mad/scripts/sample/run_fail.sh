#!/bin/bash
# A model that reports a number and then fails: the run must be recorded as FAILURE.
echo "performance: 99.0 samples_per_second"
echo "RuntimeError: simulated failure after warm-up" >&2
exit 3
