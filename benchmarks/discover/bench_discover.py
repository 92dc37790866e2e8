"""Discovery speed on a 1,000-model catalogue, against plain loading of the same files.

Generates a tree with a root models.json and 50 scripts directories (40 with models.json, 10 with
get_models_json.py), then times, in this process and in the same run:

* ours:     madengine_discover's code path: discover() + select(["all"]) (validation, rebasing,
            update_model(), de-duplication);
* baseline: json.load of every models.json plus executing every get_models_json.py and calling
            list_models() -- the least any reader of the catalogue has to do.

A second, all-JSON tree (same 1,000 models, no Python files) isolates the ratio to json.load alone.
Targets: ratio <= 2x and under 0.5 s. Exits 1 when a target is missed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import time
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _collection import use_installed_collection

use_installed_collection()
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import custom_model as _custom_model
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.discovery import discover, select

ROOT_MODELS, DIRS, PER_DIR, DYNAMIC_DIRS = 250, 50, 15, 10
REPEAT = 25


def entry(name, i):
    return {"name": name, "url": "", "dockerfile": "docker/dummy", "scripts": "scripts/dummy/run.sh",
            "n_gpus": str(1 + i % 8), "owner": "bench@example.com", "training_precision": "fp16",
            "tags": ["bench", "group_%d" % (i % 10), "pyt" if i % 2 else "tf"],
            "args": "--batch-size %d" % (16 + i % 4), "timeout": -1,
            "multiple_results": "" if i % 3 else "perf_%s.csv" % name.replace("/", "_")}


def make_tree(root, dynamic_dirs):
    os.makedirs(os.path.join(root, "scripts"))
    with open(os.path.join(root, "models.json"), "w") as handle:
        json.dump([entry("root_%d" % i, i) for i in range(ROOT_MODELS)], handle, indent=2)
    for d in range(DIRS):
        directory = os.path.join(root, "scripts", "dir%02d" % d)
        os.makedirs(directory)
        if d < dynamic_dirs:
            lines = ["from madengine.utils.discover_models import CustomModel", "", "", "def list_models():",
                     "    return ["]
            for i in range(PER_DIR):
                lines.append("        CustomModel(name=%r, dockerfile='docker/m', scripts='run.sh', n_gpus='1',"
                             " tags=['bench', 'dyn'], args='--i %d')," % ("m%d" % i, i))
            lines.append("    ]")
            with open(os.path.join(directory, "get_models_json.py"), "w") as handle:
                handle.write("\n".join(lines) + "\n")
        else:
            with open(os.path.join(directory, "models.json"), "w") as handle:
                json.dump([entry("m%d" % i, i) for i in range(PER_DIR)], handle, indent=2)


def ours(root):
    models, _notes = select(discover(root), ["all"])
    return len(models)


def baseline(root):
    """Plain reading: json.load every models.json, run every get_models_json.py's list_models()."""
    count = 0
    with open(os.path.join(root, "models.json")) as handle:
        count += len(json.load(handle))
    stub = types.ModuleType("madengine.utils.discover_models")
    stub.CustomModel = _custom_model.CustomModel
    sys.modules.update({"madengine": types.ModuleType("madengine"),
                        "madengine.utils": types.ModuleType("madengine.utils"),
                        "madengine.utils.discover_models": stub})
    scripts = os.path.join(root, "scripts")
    for dirname in os.listdir(scripts):
        path = os.path.join(scripts, dirname, "models.json")
        if os.path.exists(path):
            with open(path) as handle:
                count += len(json.load(handle))
        else:
            spec = importlib.util.spec_from_file_location("get_models_json", os.path.join(scripts, dirname,
                                                                                      "get_models_json.py"))
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            count += len(module.list_models())
    for name in ("madengine", "madengine.utils", "madengine.utils.discover_models"):
        sys.modules.pop(name, None)
    return count


def timed(root):
    """CPU seconds of ours and of the baseline: runs interleaved, the fastest of each kept.

    CPU time of this process (not wall time) and the best run of each side make the ratio
    independent of whatever else the machine runs at the same time.
    """
    ours_samples, base_samples = [], []
    for _ in range(REPEAT):
        for func, samples in ((ours, ours_samples), (baseline, base_samples)):
            start = time.process_time()
            count = func(root)
            samples.append(time.process_time() - start)
            assert count == ROOT_MODELS + DIRS * PER_DIR, (func.__name__, count)
    return min(ours_samples), min(base_samples)


def main():
    sys.dont_write_bytecode = True  # neither side may profit from cached bytecode
    ok = True
    print("discovery of a %d-model catalogue (root + %d dirs), CPU time, best of %d interleaved runs"
          % (ROOT_MODELS + DIRS * PER_DIR, DIRS, REPEAT))
    print("%-34s %10s %10s %7s  %s" % ("tree", "ours", "baseline", "ratio", "target"))
    for label, dynamic in (("mixed (10 dirs get_models_json.py)", DYNAMIC_DIRS), ("all JSON", 0)):
        with tempfile.TemporaryDirectory() as tmp:
            root = os.path.join(tmp, "mad")
            make_tree(root, dynamic)
            ours_s, base_s = timed(root)
            ratio = ours_s / base_s
            met = ratio <= 2.0 and ours_s < 0.5
            ok = ok and met
            print("%-34s %8.1fms %8.1fms %6.2fx  %s" % (label, ours_s * 1e3, base_s * 1e3, ratio,
                                                       "met (<=2x, <0.5 s)" if met else "MISSED (<=2x, <0.5 s)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
