# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Run logs brought home: the node reads the tail of each log (at most a size cap), the controller writes them.

``read_tails`` runs on the node (the fetch_run_logs module) and returns each log's last ``max_size`` bytes,
gzip-compressed and base64-encoded, so one module call carries every log of the node.  ``write_home`` runs
on the controller (the fetch_run_logs action) and writes each under the destination directory by its base
name; a cut log starts with a line saying how much was cut and where the whole log is.
"""

from __future__ import annotations

import base64
import gzip
import os

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError, atomic_write_bytes

CUT_NOTE = "[the first %d bytes of this log were cut to keep it under %d bytes; the whole log is %s on %s]\n"


def read_tails(paths, max_size):
    """[{path, size, truncated, missing, content}] of the logs ``paths``; content: base64 of the gzipped tail."""
    if max_size < 1:
        raise MadengineError("max_size must be a positive number of bytes, not %d." % max_size)
    logs = []
    for path in paths:
        item = {"path": path, "size": 0, "truncated": False, "missing": False, "content": ""}
        try:
            with open(path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(size - max_size, 0))
                data = handle.read(max_size)
        except FileNotFoundError:
            item["missing"] = True
            logs.append(item)
            continue
        except OSError as exc:
            raise MadengineError("Cannot read run log %s: %s." % (path, exc.strerror or exc))
        item.update(size=size, truncated=size > len(data),
                    content=base64.b64encode(gzip.compress(data, compresslevel=6)).decode("ascii"))
        logs.append(item)
    return logs


def home_name(dest, node_path):
    return os.path.join(dest, os.path.basename(node_path))


def write_home(logs, dest, node, max_size, same_file=None):
    """Write each fetched log to ``dest``; [{node_path, path, size, truncated, changed}] (no content)."""
    written = []
    for item in logs:
        if item["missing"]:
            written.append({"node_path": item["path"], "path": "", "size": 0, "truncated": False, "changed": False})
            continue
        path = home_name(dest, item["path"])
        changed = False
        if not (same_file and same_file(item["path"], path)):  # a local node's log is already home
            data = gzip.decompress(base64.b64decode(item["content"]))
            if item["truncated"]:
                data = (CUT_NOTE % (item["size"] - len(data), max_size, item["path"], node)).encode() + data
            try:
                with open(path, "rb") as handle:
                    changed = handle.read() != data
            except OSError:
                changed = True
            if changed:
                os.makedirs(dest, exist_ok=True)
                atomic_write_bytes(path, data)
        written.append({"node_path": item["path"], "path": os.path.abspath(path), "size": item["size"],
                        "truncated": item["truncated"], "changed": changed})
    return written


def same_file(first, second):
    """Whether two paths name one file (a local node's log already at its destination)."""
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False


def keep_tails(result, dest, node, max_size, local):
    """Write the ``log_tails`` a madengine_run result carries under ``dest`` and put ``logs`` in their place; the
    tails never stay in the result.  A copy that cannot be written leaves ``logs`` empty (the rows stay): returns
    why, for a warning, else None."""
    tails = result.pop("log_tails", None)
    if tails is None:
        return None
    try:
        result["logs"] = write_home(tails, dest, node, max_size, same_file=same_file if local else None)
    except (MadengineError, OSError, ValueError) as exc:
        result["logs"] = []
        return "Cannot keep the run logs of %s in %s: %s" % (node, dest, exc)
    return None
