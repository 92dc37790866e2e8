# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The collection's default ``scripts/common``: a ``tools.json`` and the scripts its tools use.

Used when the catalogue has no ``scripts/common/tools.json`` of its own.  It lives in Python so that it
travels with the module to every node.  The layout is madengine's: a tool's ``cmd`` runs in the model's
directory (``/myworkspace/<model dir>``), so it names its helpers ``../scripts/common/...``; post-scripts
copy what a tool wrote to ``/myworkspace``, from where madengine_run collects it.

Tools: ``rocprof`` and ``rocprofv3`` (profilers), ``rocblas_trace``, ``hipblaslt_trace``, ``miopen_trace``,
``tensile_trace``, ``rccl_trace`` (library call logs turned into ``<tool>.csv``), and
``gpu_info_power_profiler`` / ``gpu_info_vram_profiler`` (a sampler of ``amd-smi``, ``rocm-smi`` or
``nvidia-smi`` running beside the model, written to ``<tool>_output.csv``).
"""

from __future__ import annotations

COMMON = "scripts/common"

# profile.sh PROFILER OUTPUT_DIR PROFILER_ARGS... -- COMMAND...: the profiler around the model, its output in a dir.
PROFILE_SH = r"""#!/bin/bash
# Runs the model under a profiler; its files go to OUTPUT_DIR (collected by post_scripts/collect.sh).
set -u
profiler=$1; out=$2; shift 2
if ! command -v "$profiler" >/dev/null 2>&1; then
  echo "madengine tools: $profiler is not installed in this image" >&2
  exit 127
fi
mkdir -p "$out"
exec "$profiler" "$@"
"""

# capture.sh NAME -- COMMAND...: the command's output also goes to NAME.log (for a post-script to turn into a CSV).
CAPTURE_SH = r"""#!/bin/bash
# Runs the model with its output copied to $1.log; the model's exit code is kept.
set -u
name=$1; shift
[ "${1:-}" = "--" ] && shift
"$@" 2>&1 | tee -a "$name.log"
exit "${PIPESTATUS[0]}"
"""

# collect.sh TOOL [PATTERN]: turn TOOL.log lines matching PATTERN into TOOL.csv, copy TOOL outputs to /myworkspace.
COLLECT_SH = r"""#!/bin/bash
# Gathers what a tool left in the model directory into /myworkspace.
set -u
tool=$1; pattern=${2:-}
save=/myworkspace
if [ -n "$pattern" ] && [ -f "$tool.log" ]; then
  { echo "call"; grep -E -e "$pattern" "$tool.log" | sed -e 's/"/""/g' -e 's/^/"/' -e 's/$/"/'; } > "$tool.csv"
fi
for item in "${tool}_output" "$tool.csv" "$tool.log"; do
  [ -e "$item" ] && cp -R "$item" "$save/"
done
exit 0
"""

# gpu_sampler.sh start|stop power|vram: samples the GPUs every $MAD_SAMPLER_SECONDS (1) into <tool>_output.csv.
GPU_SAMPLER_SH = r"""#!/bin/bash
# A background sampler of GPU power or memory use, started before the model and stopped after it.
set -u
action=$1; what=$2
tool=gpu_info_${what}_profiler
out=$tool"_output.csv"; pidfile=/tmp/$tool.pid
every=${MAD_SAMPLER_SECONDS:-1}
sample() {
  if command -v amd-smi >/dev/null 2>&1; then
    if [ "$what" = power ]; then amd-smi metric --power --csv; else amd-smi metric --mem-usage --csv; fi
  elif command -v rocm-smi >/dev/null 2>&1; then
    if [ "$what" = power ]; then rocm-smi --showpower --csv; else rocm-smi --showmeminfo vram --csv; fi
  elif command -v nvidia-smi >/dev/null 2>&1; then
    if [ "$what" = power ]; then q=index,power.draw; else q=index,memory.used,memory.total; fi
    nvidia-smi --query-gpu=$q --format=csv,noheader
  else
    echo "no GPU tool (amd-smi, rocm-smi, nvidia-smi) in this image"
    return 1
  fi
}
case "$action" in
  start)
    echo "time,sample" > "$out"
    ( while :; do
        now=$(date +%s)
        sample 2>&1 | grep -v -e '^$' | while IFS= read -r line; do printf '%s,"%s"\n' "$now" "$line"; done >> "$out"
        sleep "$every"
      done ) &
    echo $! > "$pidfile" ;;
  stop)
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
    rm -f "$pidfile"
    [ -f "$out" ] && cp "$out" /myworkspace/ ;;
esac
exit 0
"""

SCRIPTS = {
    COMMON + "/tools/profile.sh": PROFILE_SH,
    COMMON + "/tools/capture.sh": CAPTURE_SH,
    COMMON + "/post_scripts/collect.sh": COLLECT_SH,
    COMMON + "/tools/gpu_sampler.sh": GPU_SAMPLER_SH,
    COMMON + "/pre_scripts/gpu_sampler.sh": GPU_SAMPLER_SH,
    COMMON + "/post_scripts/gpu_sampler.sh": GPU_SAMPLER_SH,
}


def _collect(tool, pattern=None):
    return [{"path": COMMON + "/post_scripts/collect.sh", "args": tool + (" '%s'" % pattern if pattern else "")}]


def _profiler(name, args):
    out = name + "_output"
    return {"pre_scripts": [], "post_scripts": _collect(name), "env_vars": {},
            "cmd": "bash ../%s/tools/profile.sh %s %s %s --" % (COMMON, name, out, args % {"out": out})}


def _library(name, env, pattern):
    return {"pre_scripts": [], "post_scripts": _collect(name, pattern), "env_vars": env,
            "cmd": "bash ../%s/tools/capture.sh %s --" % (COMMON, name)}


def _sampler(what):
    return {"pre_scripts": [{"path": COMMON + "/pre_scripts/gpu_sampler.sh", "args": "start " + what}],
            "post_scripts": [{"path": COMMON + "/post_scripts/gpu_sampler.sh", "args": "stop " + what}],
            "env_vars": {}}


TOOLS = {"tools": {
    "rocprof": _profiler("rocprof", "--stats --hip-trace -o %(out)s/results.csv"),
    "rocprofv3": _profiler("rocprofv3", "--kernel-trace --stats --output-format csv -d %(out)s"),
    "rocblas_trace": _library("rocblas_trace", {"ROCBLAS_LAYER": "2"}, "rocblas-bench"),
    "hipblaslt_trace": _library("hipblaslt_trace", {"HIPBLASLT_LOG_MASK": "32"}, "hipblaslt-bench"),
    "miopen_trace": _library("miopen_trace", {"MIOPEN_ENABLE_LOGGING_CMD": "1"}, "MIOpenDriver"),
    "tensile_trace": _library("tensile_trace", {"TENSILE_DB": "0x8000"}, "Running kernel"),
    "rccl_trace": _library("rccl_trace", {"NCCL_DEBUG": "INFO", "NCCL_DEBUG_SUBSYS": "COLL"}, "opCount"),
    "gpu_info_power_profiler": _sampler("power"),
    "gpu_info_vram_profiler": _sampler("vram"),
}}
