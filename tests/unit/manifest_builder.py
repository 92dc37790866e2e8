"""Build manifests by hand (madengine_build's shape) for tests that need no Docker engine."""

from __future__ import annotations

import copy


def image_entry(key, model, vendor="", arch=None, registry="localhost:5000", scripts="run.sh", runner="bash",
                image_id="sha256:" + "1" * 64, digest="sha256:" + "2" * 64):
    entry = {"model": model, "docker_image": key, "dockerfile": "docker/cpu.ubuntu.Dockerfile",
             "base_docker": "localhost:5000/mad-base:busybox", "docker_sha": "sha256:" + "3" * 64,
             "build_duration": 0.5, "build_command": "docker build ...", "log_file": "", "gpu_vendor": vendor}
    if arch:
        entry["gpu_architecture"] = arch
    if registry:
        entry["registry"] = registry
        entry["registry_image"] = "%s/%s" % (registry, key)
    entry["image_id"] = image_id
    if registry:
        entry["registry_digest"] = "%s/%s@%s" % (registry, key, digest)
    entry["scripts"] = ({"source_dir": "scripts/sample", "image_dir": "/madengine/scripts", "entry": scripts,
                         "runner": runner, "command": "%s %s" % (runner, scripts)} if scripts else None)
    return entry


def model_card(name, tags=("dummies",), **fields):
    card = {"name": name, "url": "", "dockerfile": "docker/cpu", "scripts": "scripts/sample/run.sh", "n_gpus": "1",
            "owner": "t@example.com", "training_precision": "fp32", "tags": list(tags), "args": ""}
    card.update(fields)
    return card


def manifest(*items, context=None, failed_builds=()):
    """``items``: (key, entry, model card) triples."""
    context = copy.deepcopy(context or {"docker_env_vars": {}, "docker_mounts": {}, "docker_build_arg": {},
                                        "gpu_vendor": "AMD", "guest_os": "UBUNTU"})
    summary = {"successful_builds": [], "failed_builds": list(failed_builds), "total_build_time": 0,
               "successful_pushes": [], "failed_pushes": []}
    document = {"built_images": {}, "built_models": {}, "context": context, "credentials_required": [],
                "summary": summary}
    for key, entry, card in items:
        if entry is not None:
            document["built_images"][key] = entry
        if card is not None:
            document["built_models"][key] = card
    return document


def simple(name, key=None, vendor="", arch=None, **fields):
    key = key or "ci-%s_cpu.ubuntu" % name.replace("/", "_")
    return key, image_entry(key, name, vendor=vendor, arch=arch), model_card(name, **fields)
