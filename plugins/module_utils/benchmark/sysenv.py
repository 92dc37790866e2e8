# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The system environment details of a model's container, in the shape of madengine's ``<model>_env.csv``.

A POSIX shell script (it runs in any image, busybox included) writes ``sep=|``, then per section a line
``------- Section: <tag>    ----------`` and ``key|value`` lines: the OS, CPU and memory always; the GPU,
ROCm and CUDA sections only when their tools or files are in the image (``rocminfo``, ``amd-smi``,
``nvidia-smi``, ``<ROCM_PATH>/.info/version``, ``nvcc``); Python packages when ``pip`` is there; NUMA
balancing when the kernel has it.  ``full`` mode adds ``lshw``/``dmidecode`` sections when installed.
"""

from __future__ import annotations

ENV_SUFFIX = "_env.csv"

SCRIPT = r"""#!/bin/sh
# Usage: sys_env_details.sh OUTPUT.csv [lite|full]
out=$1; mode=${2:-lite}
have() { command -v "$1" >/dev/null 2>&1; }
section() { echo "------- Section: $1    ----------"; }
kv() { printf '%s|%s\n' "$1" "$2"; }
colon_pairs() { sed -n 's/^[[:space:]]*\([^:]*[^:[:space:]]\)[[:space:]]*:[[:space:]]*\(.*\)$/\1|\2/p'; }
rocm=${ROCM_PATH:-/opt/rocm}
{
  echo "sep=|"
  section os_information
  kv Distribution "$(uname -s)"
  kv "Node name" "$(uname -n)"
  kv "Kernel version" "$(uname -r)"
  [ -r /etc/os-release ] && kv "OS version" "$(. /etc/os-release && echo "$PRETTY_NAME")"
  section cpu_information
  if have lscpu; then lscpu | colon_pairs; else
    grep -m 1 '^model name' /proc/cpuinfo | colon_pairs
    kv "CPU(s)" "$(grep -c '^processor' /proc/cpuinfo)"
  fi
  section memory_information
  grep -E '^(MemTotal|MemAvailable|SwapTotal):' /proc/meminfo | colon_pairs
  if have rocminfo || have amd-smi || have nvidia-smi; then
    section gpu_information
    have rocminfo && rocminfo 2>/dev/null | awk -F: '
      function v(x) { sub(/^[ \t]+/, "", x); sub(/[ \t]+$/, "", x); return x }
      /^[ \t]*Name:/ { name = v($2); market = ""; vendor = ""; uuid = "" }
      /^[ \t]*Marketing Name:/ { market = v($2) }
      /^[ \t]*Vendor Name:/ { vendor = v($2) }
      /^[ \t]*Uuid:/ { uuid = v($2) }
      /^[ \t]*Device Type:/ && v($2) == "GPU" { n++; print "Name|" name; print "Marketing Name|" market
        print "Vendor Name|" vendor; if (uuid != "") print "Uuid|" uuid }
      END { if (n) print "Num GPU|" n }'
    have amd-smi && amd-smi static --asic 2>/dev/null | grep -E 'MARKET_NAME|TARGET_GRAPHICS_VERSION' | colon_pairs
    have nvidia-smi && nvidia-smi -L 2>/dev/null | sed -n 's/^\(GPU [0-9]*\): \(.*\)$/\1|\2/p'
  fi
  if [ -r "$rocm/.info/version" ]; then
    section rocm_information
    kv "ROCm version" "$(cat "$rocm/.info/version")"
    kv "ROCm path" "$rocm"
  fi
  if have dpkg-query; then
    pkgs=$(dpkg-query -W -f '${Package}|${Version}\n' 2>/dev/null \
      | grep -E '^(rocm|hip|miopen|rocblas|hipblas|rccl|amd|cuda|libcudnn|libnccl)')
    [ -n "$pkgs" ] && { section rocm_packages_installed; echo "$pkgs"; }
  fi
  vars=$(env | grep -E '^(ROCM|HIP|HSA|MIOPEN|ROCBLAS|HIPBLASLT|TENSILE|RCCL|NCCL|CUDA|NVIDIA)[A-Z0-9_]*=' \
    | sort | sed 's/=/|/')
  [ -n "$vars" ] && { section rocm_env_variables; echo "$vars"; }
  if have nvcc || have nvidia-smi; then
    section cuda_information
    have nvcc && kv "nvcc" "$(nvcc --version 2>/dev/null | tail -n 1)"
    have nvidia-smi && nvidia-smi 2>/dev/null \
      | sed -n 's/.*Driver Version: *\([^ ]*\).*CUDA Version: *\([^ ]*\).*/Driver version|\1\
CUDA version|\2/p'
  fi
  pip=""
  have pip3 && pip="pip3"
  [ -z "$pip" ] && have python3 && python3 -m pip --version >/dev/null 2>&1 && pip="python3 -m pip"
  if [ -n "$pip" ]; then
    section pip_list
    $pip list --disable-pip-version-check 2>/dev/null | tail -n +3 | awk '{print $1 "|" $2}'
  fi
  if [ -r /proc/sys/kernel/numa_balancing ]; then
    section numa_balancing
    kv "Numa Balancing" "$(cat /proc/sys/kernel/numa_balancing)"
  fi
  if [ "$mode" = full ]; then
    have lshw && { section hardware_information; lshw -short 2>/dev/null | tail -n +3 \
      | awk '{$1=$1; print "item|" $0}'; }
    have dmidecode && { section bios_settings; dmidecode -t bios 2>/dev/null | colon_pairs; }
  fi
} > "$out"
"""


def env_csv_name(model_name):
    """madengine's name of a model's env CSV: ``<model, / -> _>_env.csv``."""
    return model_name.replace("/", "_") + ENV_SUFFIX
