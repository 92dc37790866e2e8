#!/bin/bash
# multiple_results model: writes a CSV (name in MAD_OUTPUT_CSV) with one row per sub-benchmark.
out=${MAD_OUTPUT_CSV:-perf_dummy.csv}
{
  echo "model,temperature,performance,metric"
  echo "1,20,1001.5,samples_per_second"
  echo "2,40,1002.5,samples_per_second"
  echo "3,60,1003.5,samples_per_second"
  echo "4,80,1004.5,samples_per_second"
} > "$out"
echo "wrote $out"
