"""Dockerfile text analysis (_dockerfile module_utils): base images and build-context sources."""

from __future__ import annotations

import pytest

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.dockerfile import (
    analyse,
    infer_gpu_vendor,
    instructions,
    needs_whole_context,
    source_patterns,
    substitute,
)


def test_logical_lines_continuations_comments_and_escape_directive():
    text = "# escape=`\n# CONTEXT {}\nFROM a `\n  AS b\nRUN echo 1 `\n# inside\n  && echo 2\n\ncopy x y\n"
    got = [(i.keyword, i.args) for i in instructions(text)]
    assert got == [("FROM", "a  AS b"), ("RUN", "echo 1  && echo 2"), ("COPY", "x y")]


@pytest.mark.parametrize("text, values, expected", [
    ("$A/${B}", {"A": "x", "B": "y"}, "x/y"),
    ("${A:-def}", {}, "def"),
    ("${A:-def}", {"A": ""}, "def"),
    ("${A-def}", {"A": ""}, ""),
    ("${A:+alt}", {"A": "1"}, "alt"),
    ("${A:+alt}", {}, ""),
    ("$UNKNOWN:tag", {}, ":tag"),
])
def test_substitute(text, values, expected):
    assert substitute(text, values) == expected


def test_from_uses_global_arg_defaults_and_build_args():
    text = "ARG BASE_DOCKER=localhost:5000/mad-base:busybox\nFROM ${BASE_DOCKER}\nARG LATE=x\n"
    assert analyse(text).base_refs == ["localhost:5000/mad-base:busybox"]
    assert analyse(text, {"BASE_DOCKER": "rocm/pytorch:latest"}).base_refs == ["rocm/pytorch:latest"]
    # a build argument that no ARG declares does not reach FROM
    assert analyse("FROM ${IMG:-alpine}\n", {"IMG": "other"}).base_refs == ["alpine"]


def test_stages_scratch_and_final_base():
    text = ("FROM --platform=linux/amd64 builder:1 AS build\nRUN make\nFROM scratch AS empty\n"
            "FROM build AS final\nCOPY --from=build /out /out\nFROM runtime:2\nCOPY --from=final /a /a\n")
    result = analyse(text)
    assert result.base_refs == ["builder:1", "runtime:2"]
    assert result.final_base == "runtime:2"
    assert result.copy_sources == []
    assert analyse("FROM a:1 AS one\nFROM one\n").final_base == "a:1"


def test_copy_and_add_sources():
    text = ('FROM a\nCOPY --chown=1:1 requirements.txt ./tools/ /x/\nCOPY ["src dir/f", "/y"]\n'
            "ADD https://example.org/f.tgz /z\nADD ./data/*.csv /d/\nCOPY <<EOF /etc/x\n")
    result = analyse(text)
    assert source_patterns(result) == ["requirements.txt", "tools", "src dir/f", "data/*.csv"]
    assert not needs_whole_context(result)


@pytest.mark.parametrize("line", ["COPY . /app", "COPY ./ /app", "COPY $DIR /app", "ADD ${X}/f /f"])
def test_sources_that_need_the_whole_context(line):
    assert needs_whole_context(analyse("FROM a\n" + line + "\n"))


def test_named_build_context_is_reported():
    result = analyse("FROM a AS base\nCOPY --from=tools /x /x\nCOPY --from=base /y /y\nCOPY --from=0 /z /z\n"
                     "COPY --from=alpine:3 /w /w\n")
    assert result.named_contexts == ["tools"]


@pytest.mark.parametrize("path, ctx, bases, expected", [
    ("docker/x.ubuntu.amd.Dockerfile", None, [], "AMD"),
    ("docker/x.ubuntu.nvidia.Dockerfile", None, [], "NVIDIA"),
    ("docker/x.ubuntu.Dockerfile", {"gpu_vendor": "NVIDIA"}, [], "NVIDIA"),
    ("docker/x.ubuntu.Dockerfile", {}, ["rocm/pytorch:latest"], "AMD"),
    ("docker/x.ubuntu.Dockerfile", {}, ["nvcr.io/nvidia/pytorch:24.01"], "NVIDIA"),
    ("docker/cpu.ubuntu.Dockerfile", {"guest_os": "UBUNTU"}, ["localhost:5000/mad-base:busybox"], ""),
])
def test_gpu_vendor_of_an_image(path, ctx, bases, expected):
    assert infer_gpu_vendor(path, ctx, bases) == expected
