# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The fleet a run builds for: each node's GPU profile, the (vendor, architecture) targets, and shards.

* :func:`node_profile` decides what a node is for the build: the vendor, architecture and product its
  GPUs have.  Detection wins over what the inventory declares (``madengine_gpu_vendor``,
  ``madengine_gpu_arch``), with a warning naming the node, because the images must fit the hardware that
  runs them; ``NONE`` is a choice (CPU mode), not a claim, and the inventory fills in what detection
  cannot tell (an architecture without vendor tools) or everything when detection is off.
* :func:`build_targets` is the distinct (vendor, architecture) pairs of the profiles: one image per model
  and pair is built.
* :func:`shard` spreads the models over each group of equivalent nodes (same vendor, architecture and
  product) so that the nodes of a group finish at about the same time: longest expected run first, each
  to the node with the least work so far.  Expected durations come from an earlier run's rows
  (:func:`durations_from_rows`); without them every model counts the same.
"""

from __future__ import annotations

import statistics

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host.gpu import normalise_nvidia_name

VENDORS = ("AMD", "NVIDIA", "NONE")
MATRICES = ("all", "shard")
PROFILE_KEYS = ("gpu_vendor", "gpu_architecture", "gpu_product", "gpu_count")


def declared_vendor(value, node):
    """The inventory's vendor: None for auto (nothing declared), else AMD, NVIDIA or NONE."""
    text = str(value or "auto").strip()
    if text.lower() in ("auto", "any"):
        return None
    if text.upper() not in VENDORS:
        raise MadengineError("Node %s: madengine_gpu_vendor %r is not one of auto, AMD, NVIDIA, NONE." % (node, value))
    return text.upper()


def normalise_arch(vendor, arch):
    """An architecture as images are named for it: ``gfx942``; NVIDIA's short name (``H100``)."""
    arch = str(arch or "").strip()
    if vendor == "NVIDIA" and " " in arch:
        return normalise_nvidia_name(arch)
    return arch.lower() if arch.lower().startswith("gfx") else arch


def _same_arch(one, other):
    return one.lower() == other.lower()


def node_profile(node, vendor, arch, found=None):
    """``(profile, warnings)`` of one node: ``found`` is what detection found (a GpuInventory), None when off."""
    declared = declared_vendor(vendor, node)
    declared_arch = normalise_arch(declared, arch)
    profile = {"node": node, "declared": {"gpu_vendor": declared or "auto", "gpu_architecture": declared_arch}}
    warnings = []
    if found is None:
        if declared is None:
            raise MadengineError("Node %s: GPU detection is off (madengine_gpu_detect) and madengine_gpu_vendor is "
                                 "auto; declare AMD, NVIDIA or NONE for it." % node)
        profile.update(gpu_vendor=declared, gpu_architecture="" if declared == "NONE" else declared_arch,
                       gpu_product="", gpu_count=None, source="inventory")
        return profile, warnings
    if declared == "NONE":
        profile.update(gpu_vendor="NONE", gpu_architecture="", gpu_product="", gpu_count=0, source="inventory")
        return profile, warnings
    detected_arch = normalise_arch(found.vendor, found.build_arch)
    profile.update(gpu_vendor=found.vendor, gpu_architecture=detected_arch or declared_arch,
                   gpu_product=found.product, gpu_count=found.count, source="detected")
    what = "%d %s GPU%s" % (found.count, found.vendor, "" if found.count == 1 else "s") if found.count \
        else "no GPU"
    if declared and declared != found.vendor:
        warnings.append("Node %s: the inventory declares madengine_gpu_vendor %s, but detection found %s; %s is used "
                        "(detection wins: correct the inventory)." % (node, declared, what, found.vendor))
    if found.vendor == "NONE":
        profile["gpu_architecture"] = ""
        if declared_arch and not declared:
            warnings.append("Node %s: the inventory declares madengine_gpu_arch %s, but detection found no GPU; the "
                            "node runs in CPU mode (detection wins)." % (node, declared_arch))
    elif declared_arch and detected_arch and not _same_arch(declared_arch, detected_arch):
        warnings.append("Node %s: the inventory declares madengine_gpu_arch %s, but detection found %s (%s); %s is "
                        "used (detection wins: correct the inventory)."
                        % (node, declared_arch, detected_arch, found.product or found.vendor, detected_arch))
    elif not detected_arch and declared_arch:
        profile["source"] = "detected, architecture from the inventory"
    return profile, warnings


def check_profiles(nodes):
    """``{node: profile}`` as the build takes it (profiles made by :func:`node_profile`); errors name the node."""
    if not isinstance(nodes, dict):
        raise MadengineError("nodes must map each node to its GPU profile (gpu_vendor, gpu_architecture, ...).")
    checked = {}
    for node, profile in nodes.items():
        if not isinstance(profile, dict):
            raise MadengineError("Node %s: its profile must be a dict with gpu_vendor and gpu_architecture, not %r."
                                 % (node, profile))
        vendor = str(profile.get("gpu_vendor") or "").upper()
        if vendor not in VENDORS:
            raise MadengineError("Node %s: gpu_vendor %r of its profile is not one of %s."
                                 % (node, profile.get("gpu_vendor"), ", ".join(VENDORS)))
        entry = dict(profile)
        entry.update(gpu_vendor=vendor, gpu_architecture=normalise_arch(vendor, profile.get("gpu_architecture")),
                     gpu_product=str(profile.get("gpu_product") or ""))
        checked[str(node)] = entry
    return checked


def build_targets(profiles, extra_archs=()):
    """The distinct ``(vendor, architecture)`` pairs to build for, vendors in AMD, NVIDIA, NONE order.

    ``extra_archs`` adds AMD architectures no node of this run has (to fill a registry for other nodes).
    """
    found = set((p["gpu_vendor"], "" if p["gpu_vendor"] == "NONE" else p["gpu_architecture"])
                for p in profiles.values())
    found.update(("AMD", normalise_arch("AMD", arch)) for arch in extra_archs if str(arch).strip())
    return sorted(found, key=lambda pair: (VENDORS.index(pair[0]), pair[1]))


def group_key(profile):
    return (profile["gpu_vendor"], profile["gpu_architecture"], profile["gpu_product"])


def describe_group(key):
    vendor, arch, product = key
    if vendor == "NONE":
        return "CPU only"
    return " ".join(part for part in (vendor, arch or "(architecture unknown)", product and "(%s)" % product) if part)


def groups_of(profiles):
    """``[(key, [node, ...])]``: equivalent nodes, groups and nodes in the order the profiles come in."""
    groups = {}
    for node, profile in profiles.items():
        groups.setdefault(group_key(profile), []).append(node)
    return list(groups.items())


def durations_from_rows(rows):
    """``{row model: seconds}``: the median ``test_duration`` of each row model's SUCCESS rows."""
    found = {}
    for row in rows:
        if row.get("status") != "SUCCESS":
            continue
        try:
            seconds = float(row.get("test_duration") or "")
        except ValueError:
            continue
        if seconds >= 0:
            found.setdefault(row.get("model") or "", []).append(seconds)
    return dict((model, round(statistics.median(values), 3)) for model, values in found.items() if model)


def expected_seconds(models, durations):
    """``({model: seconds}, basis)``: each model's expected run time, from ``durations`` keyed by row model.

    A multiple_results model's rows are named ``<model>_<row>``: the longest of them counts.  Models without a
    duration take the median of the known ones; when none is known every model counts 1 and ``basis`` is
    ``count``.
    """
    durations = durations or {}
    known = {}
    by_length = sorted(models, key=lambda name: -len(name))
    for row_model, value in durations.items():
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            raise MadengineError("durations: the duration of %s must be a number of seconds, not %r."
                                 % (row_model, value))
        base = row_model if row_model in models else next(
            (name for name in by_length if row_model.startswith(name + "_")), None)
        if base is not None:
            known[base] = max(known.get(base, 0.0), seconds)
    if not known:
        return dict((model, 1.0) for model in models), "count"
    fallback = statistics.median(known.values())
    return dict((model, known.get(model, fallback)) for model in models), "test_duration"


def shard(models, profiles, durations=None, unsupported=None):
    """``(assignments, groups)``: every model once per group of equivalent nodes.

    ``assignments`` maps each node to its models in selection order; ``groups`` describes each group (its
    nodes and the expected seconds of each).  ``unsupported`` ({model: [vendor, ...]}) names the vendors a model
    has no Dockerfile for: its nodes only skip it, which costs nothing.  A group of one node cannot be sharded:
    MadengineError naming it.
    """
    unsupported = unsupported or {}
    groups = groups_of(profiles)
    alone = ["%s (%s)" % (nodes[0], describe_group(key)) for key, nodes in groups if len(nodes) == 1]
    if alone:
        raise MadengineError(
            "madengine_matrix shard spreads the models over groups of equivalent nodes (same vendor, architecture and "
            "product), but %s %s alone in %s group: it would run every model by itself. Add equivalent nodes, limit "
            "the run to groups of two or more (--limit), or use madengine_matrix all."
            % (", ".join(alone), "is" if len(alone) == 1 else "are", "its" if len(alone) == 1 else "their"))
    expected, basis = expected_seconds(models, durations)
    order = dict((name, index) for index, name in enumerate(models))
    assignments, described = {}, []
    for key, nodes in groups:
        load = dict((node, 0.0) for node in nodes)
        share = dict((node, []) for node in nodes)
        cost = dict((name, 0.0 if key[0] in unsupported.get(name, ()) else expected[name]) for name in models)
        for model in sorted(models, key=lambda name: (-cost[name], order[name])):
            node = min(nodes, key=lambda n: (load[n], nodes.index(n)))
            share[node].append(model)
            load[node] += cost[model]
        for node in nodes:
            assignments[node] = sorted(share[node], key=order.get)
        described.append({"group": describe_group(key), "gpu_vendor": key[0], "gpu_architecture": key[1],
                          "gpu_product": key[2], "nodes": list(nodes), "basis": basis,
                          "expected_seconds": dict((node, round(load[node], 3)) for node in nodes)})
    return assignments, described


def plan(models, profiles, matrix="all", durations=None, unsupported=None):
    """``(assignments, groups)`` for ``matrix``: ``all`` gives every node every model."""
    if matrix not in MATRICES:
        raise MadengineError("matrix must be one of %s, not %r." % (", ".join(MATRICES), matrix))
    if matrix == "shard":
        return shard(models, profiles, durations, unsupported)
    groups = [{"group": describe_group(key), "gpu_vendor": key[0], "gpu_architecture": key[1], "gpu_product": key[2],
               "nodes": list(nodes)} for key, nodes in groups_of(profiles)]
    return dict((node, list(models)) for node in profiles), groups
