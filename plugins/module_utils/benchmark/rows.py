# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The one result-row schema: madengine's perf.csv columns first, then our provenance columns.

A row is a flat dict of strings.  The same rows are madengine_run's return value, the node's facts,
the node's CSV and, merged, the controller's CSV.  Columns a model adds through multiple_results
(``temperature``, ``benchmark``, ...) follow the provenance columns, in order of first appearance.
Only the standard library is used: GPU nodes need no pandas.
"""

from __future__ import annotations

import csv
import io
import os

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError, atomic_write_text

# madengine's perf.csv header, in its order.
MADENGINE_COLUMNS = (
    "model", "n_gpus", "nnodes", "gpus_per_node", "training_precision", "pipeline", "args", "tags",
    "docker_file", "base_docker", "docker_sha", "docker_image", "git_commit", "machine_name",
    "deployment_type", "launcher", "gpu_architecture", "performance", "metric", "relative_change",
    "status", "build_duration", "test_duration", "dataname", "data_provider_type", "data_size",
    "data_download_duration", "build_number", "additional_docker_run_options",
)

# Where and how each row was produced.
PROVENANCE_COLUMNS = (
    "host",            # inventory hostname of the node that ran the model
    "image_digest",    # digest (repo@sha256:...) or image id of the image actually run
    "gpu_product",     # e.g. "AMD Instinct MI300X", "NVIDIA H100 80GB HBM3", "" on CPU nodes
    "gpu_ids",         # GPU indices given to the container, e.g. "0,1"
    "driver_version",  # amdgpu / NVIDIA driver version
    "rocm_version",
    "cuda_version",
    "start_time",      # UTC, ISO 8601
    "end_time",
    "exit_code",       # of the model script; empty when it never ran
    "run_id",          # one id per madengine_run invocation
    "log_path",        # the model run's log on the node
    "output_files",    # files the run left (tool outputs, env CSV, kept model dir) on the node, comma-separated
    "vm_id",           # libvirt domain uuid in VM mode
    "error",           # short reason for FAILURE, TIMEOUT and SKIPPED rows
)

COLUMNS = MADENGINE_COLUMNS + PROVENANCE_COLUMNS

STATUSES = ("SUCCESS", "FAILURE", "TIMEOUT", "SKIPPED")


def _text(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return ",".join(_text(v) for v in value)
    return str(value)


def make_row(**fields):
    """A row with every schema column (missing ones empty) plus any extra columns given."""
    status = fields.get("status")
    if status not in STATUSES:
        raise ValueError("row status must be one of %s, not %r" % (", ".join(STATUSES), status))
    row = dict((column, _text(fields.pop(column, None))) for column in COLUMNS)
    for key, value in fields.items():
        row[key] = _text(value)
    return row


def header_for(rows, existing=()):
    """Column order for ``rows``: ``existing`` header kept as is, then schema columns, then extras."""
    header = list(existing)
    seen = set(header)
    for column in COLUMNS:
        if column not in seen:
            header.append(column)
            seen.add(column)
    for row in rows:
        for column in row:
            if column not in seen:
                header.append(column)
                seen.add(column)
    return header


def rows_to_csv(rows, header=None):
    header = header or header_for(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buffer.getvalue()


def read_csv(path):
    """(header, rows) of a CSV written by write_csv; a missing file is ([], [])."""
    if not os.path.exists(path):
        return [], []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = [dict((k, v or "") for k, v in row.items() if k is not None) for row in reader]
            return list(reader.fieldnames or []), rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MadengineError("Cannot read results CSV %s: %s." % (path, exc))


def write_csv(path, rows, append=False):
    """Write ``rows`` to ``path`` atomically.

    With ``append`` the file's rows are kept and its header stays first, in its order; columns the
    new rows bring are added at the end (older rows get them empty).
    """
    existing_header, existing_rows = read_csv(path) if append else ([], [])
    all_rows = existing_rows + list(rows)
    header = header_for(all_rows, existing_header)
    atomic_write_text(path, rows_to_csv(all_rows, header))
    return header
