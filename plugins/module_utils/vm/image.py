# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""Disk images of an ephemeral VM: the qcow2 overlay on a shared base and the cloud-init NoCloud seed ISO.

The base image itself is checked by the host check ``base_image`` (host/checks.py). Commands run through
``run_command(argv) -> (rc, stdout, stderr)``: the module passes
``AnsibleModule.run_command``.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

# Seed ISO builders, in order of preference; each gets (output, workdir, files).
_ISO_TOOLS = (
    ("genisoimage", lambda out, files: ["-quiet", "-output", out, "-volid", "cidata", "-joliet", "-rock"] + files),
    ("mkisofs", lambda out, files: ["-quiet", "-output", out, "-volid", "cidata", "-joliet", "-rock"] + files),
    ("xorriso", lambda out, files: ["-as", "mkisofs", "-quiet", "-output", out, "-volid", "cidata", "-joliet",
                                    "-rock"] + files),
)


def _run(run_command, cmd, what):
    if not shutil.which(cmd[0]):
        raise MadengineError("%s needs %s, which is not installed on this host." % (what, cmd[0]))
    rc, out, err = run_command(cmd)
    if rc != 0:
        text = (err or "").strip() or (out or "").strip() or "exit status %d" % rc
        raise MadengineError("%s failed: %s" % (what, text.rstrip(".") + "."))
    return out or ""


def create_overlay(run_command, base, overlay, size_bytes):
    """qcow2 overlay with an explicit backing format (``-F``); written under a temporary name, then renamed."""
    directory = os.path.dirname(overlay)
    if not os.path.isdir(directory):
        raise MadengineError("image_dir %s does not exist." % directory)
    tmp = os.path.join(directory, ".%s.tmp" % os.path.basename(overlay))
    try:
        _run(run_command, ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, tmp, str(size_bytes)],
             "creating overlay %s" % overlay)
        os.replace(tmp, overlay)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def create_seed_iso(run_command, seed, user_data, meta_data, network_config=None):
    """NoCloud seed ISO (volume label ``cidata``) holding ``user-data`` and ``meta-data``; mode 0600."""
    directory = os.path.dirname(seed)
    if not os.path.isdir(directory):
        raise MadengineError("image_dir %s does not exist." % directory)
    tool = next((t for t in _ISO_TOOLS if shutil.which(t[0])), None)
    if tool is None:
        raise MadengineError("the cloud-init seed ISO needs genisoimage, mkisofs or xorriso; none is installed.")
    work = tempfile.mkdtemp(prefix=".seed-", dir=directory)
    tmp = os.path.join(directory, ".%s.tmp" % os.path.basename(seed))
    try:
        os.chmod(work, 0o700)
        files = []
        for fname, text in (("user-data", user_data), ("meta-data", meta_data), ("network-config", network_config)):
            if text is None:
                continue
            path = os.path.join(work, fname)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            files.append(path)
        _run(run_command, [tool[0]] + tool[1](tmp, files), "building seed ISO %s" % seed)
        os.chmod(tmp, 0o600)
        os.replace(tmp, seed)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if os.path.exists(tmp):
            os.unlink(tmp)
