"""Builds MAD catalogue trees for tests."""

from __future__ import annotations

import json
import textwrap


def model(name, tags=(), **fields):
    entry = {"name": name, "dockerfile": "docker/dummy", "scripts": "scripts/dummy/run.sh", "n_gpus": "1",
             "tags": list(tags), "args": ""}
    entry.update(fields)
    return entry


def write_tree(root, models=(), dirs=None, scripts=None, raw_root=None):
    """``dirs``: {dirname: [entries]} as scripts/<dir>/models.json; ``scripts``: {dirname: python source}."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "models.json").write_text(raw_root if raw_root is not None else json.dumps(list(models), indent=2))
    for dirname, entries in (dirs or {}).items():
        d = root / "scripts" / dirname
        d.mkdir(parents=True, exist_ok=True)
        if isinstance(entries, str):
            (d / "models.json").write_text(entries)
        else:
            (d / "models.json").write_text(json.dumps(entries, indent=2))
    for dirname, source in (scripts or {}).items():
        d = root / "scripts" / dirname
        d.mkdir(parents=True, exist_ok=True)
        (d / "get_models_json.py").write_text(textwrap.dedent(source))
    return root


DUMMY3_SCRIPT = """
    from madengine.utils.discover_models import CustomModel


    class Later(CustomModel):
        def update_model(self):
            self.dockerfile = "docker/dummy3"
            self.scripts = "run.sh"


    def list_models():
        return [
            CustomModel(name="model3", dockerfile="docker/dummy3", scripts="run.sh",
                        tags=["dummies", "dummy_test_group_3"]),
            Later(name="model4", tags=["dummies", "dummy_test_group_3"]),
        ]
"""


def conformance_tree(root):
    """A reduced copy of madengine's own fixture tree (same names, tags and layout)."""
    return write_tree(
        root,
        models=[
            model("dummy", ["dummies", "dummy_test_group_1", "dummy_group_1"]),
            model("dummy2", ["dummies", "dummy_group_1", "dummy_group_2"]),
            model("dummy3", ["dummies", "dummy_group_2"]),
            model("dummy_multi", ["dummies"], multiple_results="perf_dummy.csv"),
            model("dummy_vllm", ["dummies", "inference"]),
            model("pyt_huggingface_gpt2", ["pyt"]),
            model("pyt_huggingface_bert", ["pyt"]),
        ],
        # written in reverse order on purpose: discovery order must not depend on it
        scripts={"dummy3": DUMMY3_SCRIPT},
        dirs={"dummy2": [
            {"name": "model1", "dockerfile": "../../docker/dummy", "scripts": "run.sh",
             "tags": ["dummies", "dummy_test_group_2"], "args": ""},
            {"name": "model2", "dockerfile": "../../docker/dummy", "scripts": "run.sh",
             "tags": ["dummies", "dummy_test_group_2"], "args": ""},
        ]},
    )
