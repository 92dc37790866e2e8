"""Discovery and tag grammar of rocm.madengine's _discovery module_utils."""

from __future__ import annotations

import json
import os
import sys

import pytest
from catalogue_builder import DUMMY3_SCRIPT, conformance_tree, model, write_tree

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.discovery import discover, parse_tag, select
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

ROOT = ["dummy", "dummy2", "dummy3", "dummy_multi", "dummy_vllm", "pyt_huggingface_gpt2", "pyt_huggingface_bert"]
DIRS = ["dummy2/model1", "dummy2/model2", "dummy3/model3", "dummy3/model4"]


@pytest.fixture
def tree(tmp_path):
    return conformance_tree(tmp_path / "mad")


def names(tree, tags):
    models, _notes = select(discover(str(tree)), tags)
    return [m["name"] for m in models]


@pytest.mark.parametrize("tags, expected", [
    ([], ROOT + DIRS),
    (["all"], ROOT + DIRS),
    (["dummies"], ["dummy", "dummy2", "dummy3", "dummy_multi", "dummy_vllm"] + DIRS),
    (["dummy"], ["dummy"]),
    (["dummy_test_group_1"], ["dummy"]),
    (["dummy_test_group_2"], ["dummy2/model1", "dummy2/model2"]),
    (["dummy_test_group_3"], ["dummy3/model3", "dummy3/model4"]),
    # madengine keeps duplicates (dummy dummy2 dummy2 dummy3); the first occurrence wins here
    (["dummy_group_1,dummy_group_2"], ["dummy", "dummy2", "dummy3"]),
    (["dummy_group_1", "dummy_group_2"], ["dummy", "dummy2", "dummy3"]),
    (["dummy_group_1,dummy"], ["dummy", "dummy2"]),
    (["dummy2/model2"], ["dummy2/model2"]),
    (["dummy3/all"], ["dummy3/model3", "dummy3/model4"]),
    (["dummy2/dummy_test_group_2"], ["dummy2/model1", "dummy2/model2"]),
    (["dummy2/all", "dummy"], ["dummy2/model1", "dummy2/model2", "dummy"]),
    (["pyt"], ["pyt_huggingface_gpt2", "pyt_huggingface_bert"]),
    (["inference"], ["dummy_vllm"]),
    (["dummy3"], ["dummy3"]),  # the root model, not the directory
    (["dummy2:model2"], ["dummy2/model2"]),  # the seed documents' dir:model form
    (["dummy2/model2:batch-size=32"], ["dummy2/model2"]),
    ([" dummy , dummy_multi "], ["dummy", "dummy_multi"]),
])
def test_selection_matches_madengine(tree, tags, expected):
    assert names(tree, tags) == expected


@pytest.mark.parametrize("tag, name, args", [
    ("dummy2/model2:batch-size=32", "dummy2/model2", " --batch-size 32"),
    ("dummy:batch-size=32:epochs=2", "dummy", " --batch-size 32 --epochs 2"),
    ("dummy:verbose", "dummy", " --verbose"),
    ("dummy2:model2:batch-size=32", "dummy2/model2", " --batch-size 32"),
    ("dummy2:model2", "dummy2/model2", ""),
    ("dummy:batch-size=32:", "dummy", " --batch-size 32"),
])
def test_tag_arguments_are_appended_to_args(tree, tag, name, args):
    models, _notes = select(discover(str(tree)), [tag])
    assert [(m["name"], m["args"]) for m in models] == [(name, args)]


def test_selector_arguments_apply_to_every_match(tree):
    models, _notes = select(discover(str(tree)), ["pyt:precision=fp16"])
    assert {m["args"] for m in models} == {" --precision fp16"}


def test_parse_tag_shapes():
    spec = parse_tag("scope/tag")
    assert (spec.selector, spec.scope, spec.extra_args) == ("scope/tag", ("scope", "tag"), "")
    spec = parse_tag("scope/name:k=v")
    assert (spec.selector, spec.scope, spec.extra_args) == ("scope/name", None, " --k v")
    spec = parse_tag("a/b/c")
    assert spec.scope is None
    spec = parse_tag("dir:model", known_names={"dir/model"})
    assert (spec.selector, spec.extra_args) == ("dir/model", "")
    spec = parse_tag("dir:model")  # not a known model: madengine's reading (a flag)
    assert (spec.selector, spec.extra_args) == ("dir", " --model")


def test_dir_models_are_prefixed_and_rebased(tree):
    models, _notes = select(discover(str(tree)), ["dummy2/model1", "dummy3/all"])
    by_name = {m["name"]: m for m in models}
    assert by_name["dummy2/model1"]["dockerfile"] == "docker/dummy"
    assert by_name["dummy2/model1"]["scripts"] == "scripts/dummy2/run.sh"
    assert by_name["dummy2/model1"]["tags"] == ["dummies", "dummy_test_group_2"]  # tags are not prefixed
    assert by_name["dummy3/model3"]["dockerfile"] == "scripts/dummy3/docker/dummy3"
    # model4 sets its paths in update_model(), then they are rebased once
    assert by_name["dummy3/model4"]["dockerfile"] == "scripts/dummy3/docker/dummy3"
    assert by_name["dummy3/model4"]["scripts"] == "scripts/dummy3/run.sh"
    assert by_name["dummy3/model4"]["timeout"] == 7200 and by_name["dummy3/model4"]["n_gpus"] == "-1"


def test_update_model_runs_once_even_when_selected_again(tree):
    catalogue = discover(str(tree))
    first, _notes = select(catalogue, ["dummy3/model4"])
    second, _notes = select(catalogue, ["dummy3/model4", "dummy_test_group_3"])
    assert first[0]["scripts"] == second[0]["scripts"] == "scripts/dummy3/run.sh"


def test_duplicate_with_other_arguments_keeps_first_and_says_so(tree):
    models, notes = select(discover(str(tree)), ["dummy:batch-size=1", "dummy:batch-size=2"])
    assert [m["args"] for m in models] == [" --batch-size 1"]
    assert len(notes) == 1 and "dummy" in notes[0] and "--batch-size 2" in notes[0]


def test_order_does_not_depend_on_creation_order(tmp_path):
    entry = [{"name": "m", "dockerfile": "d", "scripts": "s.sh", "args": ""}]
    root = write_tree(tmp_path / "mad", models=[model("root")], dirs={"zeta": entry})
    write_tree(root, raw_root=json.dumps([model("root")]), dirs={"alpha": entry, "mid": entry})
    assert names(root, []) == ["root", "alpha/m", "mid/m", "zeta/m"]


def test_static_entries_come_before_dynamic_ones(tmp_path):
    script = "from madengine.utils.discover_models import CustomModel\n" \
             "def list_models():\n    return [CustomModel(name='py')]\n"
    root = write_tree(tmp_path / "mad", models=[model("root")], scripts={"aaa": script},
                      dirs={"zzz": [{"name": "js", "args": ""}]})
    assert names(root, []) == ["root", "zzz/js", "aaa/py"]


def test_missing_args_defaults_to_empty(tmp_path):
    root = write_tree(tmp_path / "mad", models=[{"name": "bare"}])
    models, _notes = select(discover(str(root)), ["bare:k=v"])
    assert models[0]["args"] == " --k v"


def test_tags_as_comma_separated_string(tmp_path):
    root = write_tree(tmp_path / "mad", models=[{"name": "m", "tags": "a, b", "args": ""}])
    assert names(root, ["b"]) == ["m"]


def test_unknown_keys_are_carried_through(tmp_path):
    root = write_tree(tmp_path / "mad", models=[model("m", distributed={"launcher": "torchrun"}, extra=1)])
    models, _notes = select(discover(str(root)), ["m"])
    assert models[0]["distributed"] == {"launcher": "torchrun"} and models[0]["extra"] == 1


def test_loading_custom_models_leaves_no_trace(tree):
    before = {k for k in sys.modules if k.startswith("madengine") or k == "get_models_json"}
    discover(str(tree))
    after = {k for k in sys.modules if k.startswith("madengine") or k == "get_models_json"}
    assert before == after
    assert not os.path.exists(os.path.join(str(tree), "scripts", "dummy3", "__pycache__"))


def test_the_bundled_sample_catalogue(sample_mad):
    catalogue = discover(str(sample_mad))
    assert len(catalogue.entries) >= 6
    sources = {source.replace(str(sample_mad) + os.sep, "") for source in catalogue.sources.values()}
    assert sources == {"models.json", "scripts/dummy2/models.json", "scripts/dummy3/get_models_json.py"}
    models, _notes = select(catalogue, ["dummy", "dummy_multi", "dummy2/model2:batch-size=32"])
    assert [(m["name"], m["args"]) for m in models] == [
        ("dummy", ""), ("dummy_multi", ""), ("dummy2/model2", " --batch-size 32")]


# ---------------------------------------------------------------- bad input -------------------

def fails(root, tags=(), match=None):
    with pytest.raises(MadengineError) as info:
        select(discover(str(root)), list(tags))
    message = str(info.value)
    assert "Traceback" not in message
    for fragment in match:
        assert fragment in message, message
    return message


def test_missing_mad_root(tmp_path):
    fails(tmp_path / "nowhere", match=["mad_root", "nowhere", "is not a directory"])


def test_mad_root_without_models_json(tmp_path):
    (tmp_path / "empty").mkdir()
    fails(tmp_path / "empty", match=["empty", "has no models.json"])


def test_malformed_root_json_names_file_and_line(tmp_path):
    root = write_tree(tmp_path / "mad", raw_root='[\n  {"name": "a",\n   "args": ""\n  ,}\n]\n')
    fails(root, match=[str(root / "models.json"), "is not valid JSON", "line 4"])


def test_malformed_dir_json_names_file_and_line(tmp_path):
    root = write_tree(tmp_path / "mad", models=[model("a")], dirs={"bad": '[\n{"name": "x"\n'})
    fails(root, match=[os.path.join("scripts", "bad", "models.json"), "is not valid JSON", "line 3"])


@pytest.mark.parametrize("raw, fragment", [
    ('{"name": "a"}', "must hold a JSON array"),
    ('["a"]', "entry 1 is a str, not a model object"),
])
def test_root_json_of_the_wrong_shape(tmp_path, raw, fragment):
    root = write_tree(tmp_path / "mad", raw_root=raw)
    fails(root, match=["models.json", fragment])


def test_entry_without_name(tmp_path):
    root = write_tree(tmp_path / "mad", models=[model("a"), {"dockerfile": "docker/x", "args": ""}])
    fails(root, match=["models.json", "entry 2 has no 'name'"])


def test_dir_entry_without_name(tmp_path):
    root = write_tree(tmp_path / "mad", models=[model("a")], dirs={"d": [{"args": ""}]})
    fails(root, match=[os.path.join("scripts", "d", "models.json"), "entry 1 has no 'name'"])


def test_name_with_colon(tmp_path):
    root = write_tree(tmp_path / "mad", models=[model("bad:name")])
    fails(root, match=["models.json", "'bad:name'", "contains ':'"])


def test_field_of_the_wrong_type(tmp_path):
    root = write_tree(tmp_path / "mad", models=[model("a", args=["--x"])])
    fails(root, match=["models.json", "model 'a' field 'args' must be a string"])


def test_tags_of_the_wrong_type(tmp_path):
    root = write_tree(tmp_path / "mad", models=[model("a", tags=[1, 2])])
    fails(root, match=["model 'a' field 'tags'"])


def test_duplicate_model_names(tmp_path):
    root = write_tree(tmp_path / "mad", models=[model("a"), model("a")])
    fails(root, match=["Model 'a' is defined twice"])


def test_dir_with_both_sources(tmp_path):
    root = write_tree(tmp_path / "mad", models=[model("a")], dirs={"both": [model("x")]},
                      scripts={"both": DUMMY3_SCRIPT})
    fails(root, match=[os.path.join("scripts", "both"), "both models.json and get_models_json.py"])


@pytest.mark.parametrize("source, fragments", [
    ("raise RuntimeError('no network here')\n", ["could not be loaded", "RuntimeError: no network here"]),
    ("def list_models(:\n", ["could not be loaded", "SyntaxError"]),
    ("import sys\nsys.exit(3)\n", ["could not be loaded", "SystemExit"]),
    ("def list_models():\n    raise ValueError('bad row')\n", ["list_models() raised ValueError: bad row"]),
    ("X = 1\n", ["does not define a list_models() function"]),
    ("def list_models():\n    return {'name': 'x'}\n", ["must return a list of CustomModel objects, not a dict"]),
    ("def list_models():\n    return [{'name': 'x'}]\n", ["item 1 is a dict", "CustomModel"]),
    ("from madengine.utils.discover_models import CustomModel\n"
     "def list_models():\n    return [CustomModel(name='a:b')]\n", ["'a:b'", "contains ':'"]),
    ("from madengine.utils.discover_models import CustomModel\n"
     "def list_models():\n    return [CustomModel(name='ok', args=5)]\n", ["field 'args' must be a string"]),
])
def test_get_models_json_failures(tmp_path, source, fragments):
    root = write_tree(tmp_path / "mad", models=[model("a")], scripts={"py": source})
    fails(root, match=[os.path.join("scripts", "py", "get_models_json.py")] + fragments)


def test_update_model_that_raises(tmp_path):
    source = ("from madengine.utils.discover_models import CustomModel\n"
              "class M(CustomModel):\n    def update_model(self):\n        raise KeyError('path')\n"
              "def list_models():\n    return [M(name='m')]\n")
    root = write_tree(tmp_path / "mad", models=[model("a")], scripts={"py": source})
    fails(root, tags=["py/m"], match=["get_models_json.py", "update_model() of model 'py/m' raised KeyError"])


def test_update_model_that_renames(tmp_path):
    source = ("from madengine.utils.discover_models import CustomModel\n"
              "class M(CustomModel):\n    def update_model(self):\n        self.name = 'other'\n"
              "def list_models():\n    return [M(name='m')]\n")
    root = write_tree(tmp_path / "mad", models=[model("a")], scripts={"py": source})
    fails(root, tags=["py/m"], match=["update_model() of model 'py/m' changed its name"])


def test_tag_that_selects_nothing_suggests_names(tree):
    message = fails(tree, tags=["dumy_multi"], match=["Tag 'dumy_multi' selects no model", str(tree)])
    assert "Close names: dummy_multi" in message


def test_scoped_tag_that_selects_nothing(tree):
    fails(tree, tags=["dummy2/model9"], match=["Tag 'dummy2/model9' selects no model in scripts/dummy2"])


def test_nonexistent_tag_without_suggestions(tree):
    message = fails(tree, tags=["zzzzzzzz"], match=["Tag 'zzzzzzzz' selects no model"])
    assert "Close names" not in message


@pytest.mark.parametrize("tag", [":k=v", " : "])
def test_tag_without_selector(tree, tag):
    fails(tree, tags=[tag], match=["Tag"])
