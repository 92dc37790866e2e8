"""The fake GPU sysfs tree and vendor tools of ci/simfleet/fake_gpu.py (shared with ci/simulated-fleet.sh)."""

from __future__ import annotations

import os
import sys

_CI = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "ci")
if _CI not in sys.path:
    sys.path.insert(0, _CI)

from simfleet.fake_gpu import (
    H100_DEVICE,
    KINDS,
    MI100_DEVICE,
    MI250_DEVICE,
    MI300X_DEVICE,
    FakeGpuSysfs,
    fake_amd_smi,
    fake_devices,
    fake_nvidia_devices,
    fake_nvidia_smi,
    fake_rocm,
    fake_rocm_smi,
    gfx_target_version,
    location_id,
    write_host_root,
    write_tool,
)

__all__ = ["H100_DEVICE", "KINDS", "MI100_DEVICE", "MI250_DEVICE", "MI300X_DEVICE", "FakeGpuSysfs", "fake_amd_smi",
           "fake_devices", "fake_nvidia_devices", "fake_nvidia_smi", "fake_rocm", "fake_rocm_smi",
           "gfx_target_version", "location_id", "write_host_root", "write_tool"]
