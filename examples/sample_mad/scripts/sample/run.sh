#!/bin/bash
# Single-result model: prints one madengine performance line.
# Arguments: --batch-size N (default 16); anything else is ignored.
batch=16
while [ $# -gt 0 ]; do
  case "$1" in
    --batch-size) batch=$2; shift 2 ;;
    *) shift ;;
  esac
done
echo "model ${MAD_MODEL_NAME:-unknown} on ${MAD_GPU_VENDOR:-cpu}, batch size ${batch}"
# the GPUs the container was given: NVIDIA's runtime sets NVIDIA_VISIBLE_DEVICES, AMD's are render nodes
echo "gpus: NVIDIA_VISIBLE_DEVICES=${NVIDIA_VISIBLE_DEVICES:-} dri=$(cd /dev/dri 2>/dev/null && echo *)"
echo "performance: $((batch * 125)).5 samples_per_second"
