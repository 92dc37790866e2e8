"""madengine_discover through the AnsibleModule harness."""

from __future__ import annotations

import json

from catalogue_builder import conformance_tree, write_tree

from ansible_collections.rocm.madengine.plugins.modules import madengine_discover


def test_selects_and_sets_facts(tmp_path, module_runner):
    root = conformance_tree(tmp_path / "mad")
    result = module_runner(madengine_discover, {"mad_root": str(root), "tags": ["dummy_test_group_2", "dummy:bs=2"]})
    assert not result.failed and result["changed"] is False
    assert [m["name"] for m in result["models"]] == ["dummy2/model1", "dummy2/model2", "dummy"]
    assert result["models"][2]["args"] == " --bs 2"
    assert result["ansible_facts"]["madengine_models"] == result["models"]
    assert result["available"] == 11


def test_comma_separated_string_tags(tmp_path, module_runner):
    root = conformance_tree(tmp_path / "mad")
    result = module_runner(madengine_discover, {"mad_root": str(root), "tags": "pyt,dummy"})
    assert [m["name"] for m in result["models"]] == ["pyt_huggingface_gpt2", "pyt_huggingface_bert", "dummy"]


def test_check_mode_returns_the_same_selection(tmp_path, module_runner):
    root = conformance_tree(tmp_path / "mad")
    normal = module_runner(madengine_discover, {"mad_root": str(root), "tags": ["dummies"]})
    checked = module_runner(madengine_discover, {"mad_root": str(root), "tags": ["dummies"]}, check_mode=True)
    assert checked["models"] == normal["models"] and checked["changed"] is False


def test_no_tags_returns_everything(tmp_path, module_runner):
    root = conformance_tree(tmp_path / "mad")
    result = module_runner(madengine_discover, {"mad_root": str(root)})
    assert len(result["models"]) == result["available"] == 11


def test_duplicates_warn(tmp_path, module_runner):
    root = conformance_tree(tmp_path / "mad")
    result = module_runner(madengine_discover, {"mad_root": str(root), "tags": ["dummy:a=1", "dummy:a=2"]})
    assert len(result["models"]) == 1
    assert any("selected again" in w for w in result["warnings"])


def test_failure_is_a_sentence_not_a_traceback(tmp_path, module_runner):
    root = write_tree(tmp_path / "mad", raw_root="[{]")
    result = module_runner(madengine_discover, {"mad_root": str(root), "tags": ["x"]})
    assert result.failed
    assert result["msg"].startswith("model catalogue %s is not valid JSON" % (root / "models.json"))
    assert "exception" not in result


def test_unknown_tag_fails_the_task(tmp_path, module_runner):
    root = conformance_tree(tmp_path / "mad")
    result = module_runner(madengine_discover, {"mad_root": str(root), "tags": ["nonexistent"]})
    assert result.failed and "Tag 'nonexistent' selects no model" in result["msg"]


def test_result_is_json_serialisable(tmp_path, module_runner):
    root = conformance_tree(tmp_path / "mad")
    result = module_runner(madengine_discover, {"mad_root": str(root), "tags": ["all"]})
    json.dumps(result)
