"""The shape of plugins/, measured from the source: class and function sizes, what module_utils import.

Rules of the house: no class over 400 lines and no function over 80 lines anywhere in plugins/; no
file under plugins/module_utils imports a module (plugins/modules); the module_utils files import
each other without a cycle; a module is documentation, an argument spec and a main() that creates the
AnsibleModule and hands it to ``run(module)`` of ``module_utils/<subsystem>/<module>_task.py``.
Each failure names the file, line and object, so the offender is found at once.  Run these alone
with ``pytest -m structure tests/unit``.
"""

from __future__ import annotations

import ast
import os

import pytest

MAX_CLASS_LINES = 400
MAX_FUNCTION_LINES = 80
PACKAGE = "ansible_collections.rocm.madengine.plugins"
UTILS = PACKAGE + ".module_utils"
MODULES = PACKAGE + ".modules"

pytestmark = pytest.mark.structure


@pytest.fixture(scope="module")
def plugins_dir(collection_dir):
    return os.path.join(collection_dir, "plugins")


def python_files(root):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".py"):
                yield os.path.join(dirpath, name)


def parse(path):
    with open(path, encoding="utf-8") as handle:
        return ast.parse(handle.read(), filename=path)


def sizes(tree):
    """(kind, qualified name, first line, length in lines) of every class and function, nested ones too."""
    found = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                kind = "class" if isinstance(child, ast.ClassDef) else "function"
                name = prefix + child.name
                found.append((kind, name, child.lineno, child.end_lineno - child.lineno + 1))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def oversized(root, limits):
    offenders = []
    for path in python_files(root):
        for kind, name, line, length in sizes(parse(path)):
            if length > limits[kind]:
                offenders.append("%s:%d %s %s is %d lines (at most %d)"
                                 % (os.path.relpath(path, root), line, kind, name, length, limits[kind]))
    return offenders


def imported_names(tree, own_name):
    """Absolute dotted names a file imports (relative imports resolved against ``own_name``)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = own_name.split(".")[:-node.level]
                base = ".".join(parent + ([base] if base else []))
            names.append((base, node.lineno))
            # ``from package import submodule`` imports the submodule
            names.extend(("%s.%s" % (base, alias.name), node.lineno) for alias in node.names)
    return names


def dotted_name(root, path):
    rel = os.path.relpath(path, root)[:-len(".py")].replace(os.sep, ".")
    if rel.endswith(".__init__"):
        rel = rel[:-len(".__init__")]
    return PACKAGE + "." + rel


def module_utils_graph(root):
    """{module_utils file's dotted name: {module_utils names it imports: first line}} and the file paths."""
    utils_root = os.path.join(root, "module_utils")
    files = dict((dotted_name(root, path), path) for path in python_files(utils_root))
    graph = {}
    for name, path in files.items():
        edges = {}
        for imported, line in imported_names(parse(path), name):
            if imported in files and imported != name:
                edges.setdefault(imported, line)
        graph[name] = edges
    return graph, files


def find_cycle(graph):
    """One import cycle as a list of names (first == last), or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, stack)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [])
            if cycle:
                return cycle
    return None


# ---- the rules over plugins/ ---------------------------------------------------------------------

def test_no_class_over_400_lines(plugins_dir):
    offenders = oversized(plugins_dir, {"class": MAX_CLASS_LINES, "function": float("inf")})
    assert not offenders, "classes too long:\n" + "\n".join(offenders)


def test_no_function_over_80_lines(plugins_dir):
    offenders = oversized(plugins_dir, {"class": float("inf"), "function": MAX_FUNCTION_LINES})
    assert not offenders, "functions too long:\n" + "\n".join(offenders)


def test_no_module_utils_file_imports_a_module(plugins_dir):
    offenders = []
    for path in python_files(os.path.join(plugins_dir, "module_utils")):
        for imported, line in imported_names(parse(path), dotted_name(plugins_dir, path)):
            if imported == MODULES or imported.startswith(MODULES + "."):
                offenders.append("%s:%d imports %s" % (os.path.relpath(path, plugins_dir), line, imported))
    assert not offenders, "module_utils must not import modules:\n" + "\n".join(offenders)


def test_no_import_cycle_among_module_utils(plugins_dir):
    graph, files = module_utils_graph(plugins_dir)
    cycle = find_cycle(graph)
    if cycle:
        steps = ["%s:%d imports %s" % (os.path.relpath(files[a], plugins_dir), graph[a][b], b)
                 for a, b in zip(cycle, cycle[1:])]
        pytest.fail("import cycle among module_utils:\n" + "\n".join(steps))


def module_shape_problems(path, module_name):
    """Why a module file is more than documentation, argument spec and a main() handing over (empty: fine)."""
    tree = parse(path)
    problems = []
    task = None
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(UTILS + ".") \
                and (node.module or "").endswith("." + module_name + "_task"):
            if [alias.name for alias in node.names] == ["run"]:
                task = node.module
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name != "main":
            problems.append("defines %s" % node.name)
    if task is None:
        problems.append("does not import run from module_utils/<subsystem>/%s_task.py" % module_name)
    main = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main"]
    if not main:
        return problems + ["has no main()"]
    for node in ast.walk(main[0]):
        if node is not main[0] and isinstance(node, (ast.FunctionDef, ast.Lambda, ast.Try, ast.If, ast.For,
                                                     ast.While, ast.With)):
            problems.append("main() holds a %s (line %d)" % (type(node).__name__, node.lineno))
    last = main[0].body[-1]
    if not (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call) and isinstance(last.value.func, ast.Name)
            and last.value.func.id == "run"):
        problems.append("main() does not end by handing the AnsibleModule to run(module)")
    return problems


def test_every_module_hands_over_to_its_task(plugins_dir):
    offenders = []
    for path in python_files(os.path.join(plugins_dir, "modules")):
        name = os.path.basename(path)[:-len(".py")]
        if os.path.exists(os.path.join(plugins_dir, "action", name + ".py")):
            continue  # an action plugin's documentation
        offenders.extend("modules/%s.py %s" % (name, problem) for problem in module_shape_problems(path, name))
    assert not offenders, "modules must only create the AnsibleModule and hand over:\n" + "\n".join(offenders)


# ---- the measuring itself: each check fails on a known offender --------------------------------

def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_sizes_measure_nested_definitions_by_their_lines(tmp_path):
    body = "".join("        x%d = %d\n" % (i, i) for i in range(81))
    path = write(tmp_path / "plugins" / "module_utils" / "big.py",
                 "class Big(object):\n    def method(self):\n" + body + "\n\ndef small():\n    return 1\n")
    found = dict(((kind, name), length) for kind, name, _line, length in sizes(parse(str(path))))
    assert found[("function", "Big.method")] == 82
    assert found[("class", "Big")] == 83
    assert found[("function", "small")] == 2
    assert oversized(str(tmp_path / "plugins"), {"class": 400, "function": 80}) == [
        "module_utils/big.py:2 function Big.method is 82 lines (at most 80)"]


def test_a_module_import_and_a_cycle_are_named(tmp_path):
    root = tmp_path / "plugins"
    write(root / "module_utils" / "__init__.py", "")
    write(root / "module_utils" / "a.py", "from %s.module_utils import b\n" % PACKAGE)
    write(root / "module_utils" / "b.py", "import os\n\nfrom %s.module_utils.c import thing\n" % PACKAGE)
    write(root / "module_utils" / "c.py", "from .a import x\nfrom %s.modules import madengine_run\n" % PACKAGE)
    graph, _files = module_utils_graph(str(root))
    assert find_cycle(graph) == [UTILS + ".a", UTILS + ".b", UTILS + ".c", UTILS + ".a"]
    names = [n for n, _line in imported_names(parse(str(root / "module_utils" / "c.py")), UTILS + ".c")]
    assert UTILS + ".a" in names and MODULES + ".madengine_run" in names
    write(root / "module_utils" / "c.py", "THING = 1\n")
    graph, _files = module_utils_graph(str(root))
    assert find_cycle(graph) is None


def test_module_shape_names_what_a_module_does_itself(tmp_path):
    path = write(tmp_path / "plugins" / "modules" / "thing.py", (
        "from ansible.module_utils.basic import AnsibleModule\n\n"
        "from %s.benchmark.thing_task import run\n\n\n"
        "def helper():\n    return 1\n\n\n"
        "def main():\n    module = AnsibleModule(argument_spec={})\n    try:\n        run(module)\n"
        "    except ValueError:\n        module.fail_json(msg='x')\n" % UTILS))
    assert module_shape_problems(str(path), "thing") == [
        "defines helper", "main() holds a Try (line 12)",
        "main() does not end by handing the AnsibleModule to run(module)"]
    write(path, "def main():\n    run(module)\n")
    assert module_shape_problems(str(path), "thing") == [
        "does not import run from module_utils/<subsystem>/thing_task.py"]
