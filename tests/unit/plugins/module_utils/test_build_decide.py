"""build.decide: the one build / reuse / push decision, here from a previous manifest (check mode's state).

The real run's state (the engine and the registry) goes through the same function; the Docker tests
(tests/integration/test_build_docker.py) show that check mode predicts what the real run then does.
"""

from __future__ import annotations

import pytest
from build_tree import ctx_tree
from catalogue_builder import model

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.build import (
    BUILD,
    REUSE,
    BuildPolicy,
    ManifestState,
    decide,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.build_plan import Planner
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.context import normalise_context
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.credentials import Credentials
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.manifest import build_manifest

REGISTRY = "localhost:5000"
BASES = {"localhost:5000/mad-base:busybox": "sha256:" + "b" * 64}


@pytest.fixture
def plan(tmp_path):
    root = ctx_tree(tmp_path / "mad")
    ctx = normalise_context({})
    planner = Planner(str(root), ctx, ctx, Credentials(environ={}), image_prefix="unit-", registry=REGISTRY,
                      log_dir=str(tmp_path))
    plans, failures = planner.plan([model("dummy_cpu", dockerfile="docker/cpu")])
    assert failures == [] and len(plans) == 1
    return plans[0]


def recorded(plan, **changes):
    """The previous manifest's ``built_images`` after a real run built and pushed ``plan``."""
    outcome = decide(plan, BuildPolicy(), ManifestState({}))
    outcome.action = "built"
    outcome.base_digests = dict(BASES)
    outcome.content_key = plan.content_key(BASES)
    outcome.image_id = "sha256:" + "1" * 64
    outcome.build_duration = 3.25
    outcome.log_file = "/srv/logs/dummy_cpu_cpu.ubuntu.build.live.log"
    outcome.registry_digest = "%s/%s@sha256:%s" % (REGISTRY, plan.image, "2" * 64)
    entries = build_manifest([outcome], [], {}, [plan.model], REGISTRY)["built_images"]
    entries[plan.image].update(changes)
    return entries


def test_no_record_means_build_and_push(plan):
    outcome = decide(plan, BuildPolicy(), ManifestState({}))
    assert (outcome.action, outcome.reason) == (BUILD, "the manifest has no record of this image")
    assert outcome.push_planned is True and outcome.image_id is None


def test_the_same_content_key_means_reuse_without_push(plan):
    previous = recorded(plan)
    outcome = decide(plan, BuildPolicy(), ManifestState(previous), previous)
    assert outcome.action == REUSE
    assert outcome.reason == ("the manifest records an image with this content key; the manifest records registry "
                              "tag %s/%s with this image" % (REGISTRY, plan.image))
    assert outcome.push_planned is False
    assert outcome.content_key == previous[plan.image]["content_key"] and outcome.base_digests == BASES
    assert outcome.image_id == "sha256:" + "1" * 64 and outcome.build_duration == 3.25
    assert outcome.log_file == "/srv/logs/dummy_cpu_cpu.ubuntu.build.live.log"
    assert outcome.registry_digest == previous[plan.image]["registry_digest"]


def test_another_content_key_means_build(plan):
    previous = recorded(plan, content_key="sha256:" + "0" * 64)
    outcome = decide(plan, BuildPolicy(), ManifestState(previous), previous)
    assert outcome.action == BUILD and outcome.push_planned is True
    assert outcome.reason == ("the Dockerfile, build context, scripts or build arguments changed since the manifest "
                              "was written")
    assert outcome.build_duration == 0.0 and outcome.log_file is None


def test_rebuild_always_builds_what_could_be_reused(plan):
    previous = recorded(plan)
    outcome = decide(plan, BuildPolicy(rebuild="always", pull=False), ManifestState(previous), previous)
    assert (outcome.action, outcome.reason) == (BUILD, "rebuild is always")
    assert outcome.build_command.startswith("docker build --no-cache --network=host -t unit-dummy_cpu_cpu.ubuntu -f ")


@pytest.mark.parametrize("changes", [
    {"push_error": "Registry localhost:5000 is unreachable."},
    {"registry_digest": None},
    {"registry_image": "otherhost:5000/unit-dummy_cpu_cpu.ubuntu"},
])
def test_a_reused_image_the_registry_may_lack_is_pushed(plan, changes):
    previous = recorded(plan, **changes)
    outcome = decide(plan, BuildPolicy(), ManifestState(previous), previous)
    assert outcome.action == REUSE and outcome.push_planned is True and outcome.registry_digest is None
    assert outcome.reason.endswith("; the manifest records no push of registry tag %s/%s" % (REGISTRY, plan.image))


def test_the_build_command_follows_the_policy(plan):
    outcome = decide(plan, BuildPolicy(pull=False, network="none"), ManifestState({}))
    assert outcome.build_command == ("docker build --network=none -t unit-dummy_cpu_cpu.ubuntu -f "
                                     "docker/cpu.ubuntu.Dockerfile docker")
