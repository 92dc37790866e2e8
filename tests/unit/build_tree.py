"""Small MAD trees with Dockerfiles and scripts, for the build tests (models.json via catalogue_builder)."""

from __future__ import annotations

import os

from catalogue_builder import model, write_tree

BASE = os.environ.get("MADCI_REGISTRY", "localhost:5000") + "/mad-base:busybox"

RUN_SH = '#!/bin/bash\necho "performance: 42.0 samples_per_second"\n'


def dockerfile(ctx=None, body="", header=True):
    """A Dockerfile text on the local busybox base; ``ctx`` None writes no CONTEXT line."""
    lines = []
    if ctx is not None and header:
        lines.append("# CONTEXT %r" % (ctx,))
    lines += ["ARG BASE_DOCKER=%s" % BASE, "FROM ${BASE_DOCKER}"]
    if body:
        lines.append(body.rstrip("\n"))
    return "\n".join(lines) + "\n"


def write(root, rel, text, mode=None):
    path = os.path.join(str(root), rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    if mode is not None:
        os.chmod(path, mode)
    return path


def ctx_tree(root, extra_models=(), dockerfiles=None):
    """madengine's CONTEXT fixture in miniature.

    * ``dummy``: docker/dummy.ubuntu.amd and .nvidia (also docker/dummy_ctxtest.* must not match);
    * ``dummy_ctxtest``: noctx (ctx_test 'None'), ctx1, ctx2a, ctx2b;
    * ``dummy_cpu``: docker/cpu.ubuntu, vendor-neutral.
    """
    models = [
        model("dummy", ["dummies"], dockerfile="docker/dummy"),
        model("dummy_ctxtest", ["dummies"], dockerfile="docker/dummy_ctxtest"),
        model("dummy_cpu", ["dummies", "cpu"], dockerfile="docker/cpu"),
    ] + list(extra_models)
    write_tree(root, models=models)
    files = {
        "docker/dummy.ubuntu.amd.Dockerfile": dockerfile({"gpu_vendor": "AMD", "guest_os": "UBUNTU"},
                                                         "ENV FLAVOUR=amd"),
        "docker/dummy.ubuntu.nvidia.Dockerfile": dockerfile({"gpu_vendor": "NVIDIA", "guest_os": "UBUNTU"},
                                                            "ENV FLAVOUR=nvidia"),
        "docker/dummy_ctxtest.noctx.ubuntu.amd.Dockerfile": dockerfile({"ctx_test": "None", "gpu_vendor": "AMD"}),
        "docker/dummy_ctxtest.ctx1.ubuntu.amd.Dockerfile": dockerfile({"ctx_test": "1", "gpu_vendor": "AMD"}),
        "docker/dummy_ctxtest.ctx2a.ubuntu.amd.Dockerfile": dockerfile({"ctx_test": "2", "gpu_vendor": "AMD"}),
        "docker/dummy_ctxtest.ctx2b.ubuntu.amd.Dockerfile": dockerfile({"ctx_test": "2", "gpu_vendor": "AMD"}),
        "docker/cpu.ubuntu.Dockerfile": dockerfile({"guest_os": "UBUNTU"}, "ENV FLAVOUR=cpu"),
    }
    files.update(dockerfiles or {})
    for rel, text in files.items():
        write(root, rel, text)
    write(root, "scripts/dummy/run.sh", RUN_SH, 0o755)
    return root
