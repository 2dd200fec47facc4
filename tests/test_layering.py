"""The floor plan: every import in the package (at the top of a module or inside a function) goes to a module on
the same floor or below, and no chain of imports comes back to where it started."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "backprop"

# Module-name prefixes by floor, bottom first; the longest matching prefix decides.
FLOORS = [
    ("array backend", ["xp", "devices", "elementwise", "naming", "user_warnings", "version", "utils",
                       "plot.figure"]),  # the one place matplotlib is imported, as xp is NumPy's and CuPy's
    ("autodiff", ["tensor", "tape", "ops", "random", "tracing", "compiled", "explain", "debug"]),
    ("building blocks", ["activations", "initializers", "regularizers", "parameters", "layers", "losses", "metrics",
                         "optimizers"]),
    ("files and data", ["saving", "export", "datasets"]),
    ("training", ["training", "callbacks", "distribute", "tools", "landscape"]),
    ("models", ["models"]),
    ("pictures", ["plot"]),
    ("the bp namespace", [""]),
    ("applications", ["cli", "__main__", "run", "playground", "lecture", "sklearn", "compat", "export.tabular"]),
]


def module_files(package):
    """{'backprop.ops.op': path, ...} for every module of the package at ``package``."""
    modules = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported_modules(module, node, is_package, modules):
    """The package's modules an import statement in ``module`` loads."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & modules.keys()
    if node.level:  # relative: from . import x, from ..ops import y
        base = module.split(".")[: len(module.split(".")) - (0 if is_package else 1)]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module
    # 'from a import b' loads module a.b when there is one, else takes the name b from module a
    return {f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
            for alias in node.names} & modules.keys()


def import_graph(package):
    """{module: set of the package's modules it imports anywhere in its text}."""
    modules = module_files(package)
    graph = {}
    for module, path in modules.items():
        imports = [node for node in ast.walk(ast.parse(path.read_text(), str(path)))
                   if isinstance(node, (ast.Import, ast.ImportFrom))]
        targets = set().union(*(_imported_modules(module, node, path.name == "__init__.py", modules)
                                for node in imports))
        graph[module] = targets - {module}
    return graph


def circles(graph):
    """Each import circle as a list of modules (the first repeated at the end), one per strongly connected group."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module):  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                found.append(_a_path_around(graph, set(group)))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def _a_path_around(graph, group):
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for module in frontier:
            for target in sorted(graph[module] & group):
                if target == start:
                    return paths[module] + [start]
                if target not in paths:
                    paths[target] = paths[module] + [target]
                    nxt.append(target)
        frontier = nxt
    return sorted(group)


def floor_of(module, package_name="backprop"):
    name = module[len(package_name) + 1:] if module != package_name else ""
    best = None
    for number, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if name == prefix or name.startswith(prefix + ".") or (prefix == "" and name == ""):
                if best is None or len(prefix) > best[1]:
                    best = (number, len(prefix))
    return None if best is None else best[0]


def test_no_import_circle():
    found = circles(import_graph(PACKAGE))
    assert not found, "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_every_import_goes_to_the_same_floor_or_below():
    graph = import_graph(PACKAGE)
    unplaced = sorted(m for m in graph if floor_of(m) is None)
    assert not unplaced, f"modules on no floor (add them to FLOORS): {unplaced}"
    upward = [f"{m} ({FLOORS[floor_of(m)][0]}) imports {t} ({FLOORS[floor_of(t)][0]})"
              for m in sorted(graph) for t in sorted(graph[m]) if floor_of(t) > floor_of(m)]
    assert not upward, "imports that climb a floor:\n" + "\n".join(upward)


@pytest.fixture
def toy_package(tmp_path):
    root = tmp_path / "toy"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("from toy.sub import low\n")
    (root / "sub" / "low.py").write_text("def f():\n    from ..high import g  # hidden in a function\n")
    (root / "high.py").write_text("from toy.sub import low\n")
    return root


def test_the_walker_sees_a_circle_through_an_import_inside_a_function(toy_package):
    graph = import_graph(toy_package)
    assert graph["toy.sub.low"] == {"toy.high"} and graph["toy.high"] == {"toy.sub.low"}
    assert circles(graph) == [["toy.high", "toy.sub.low", "toy.high"]]


def test_a_floor_is_the_longest_matching_prefix():
    assert FLOORS[floor_of("backprop.export.tabular")][0] == "applications"
    assert FLOORS[floor_of("backprop.export.onnx")][0] == "files and data"
    assert FLOORS[floor_of("backprop")][0] == "the bp namespace"
    assert floor_of("backprop.plot.figure") < floor_of("backprop.tools") < floor_of("backprop.plot.graph")


def test_the_readme_layout_names_every_room():
    readme = (PACKAGE.parent / "README.md").read_text()
    layout = readme[readme.index("## Layout"):].split("\n## ")[0]
    rooms = sorted(p.name + ("/" if p.is_dir() else "") for p in PACKAGE.iterdir()
                   if not p.name.startswith("__") and (p.suffix == ".py" or (p / "__init__.py").exists()))
    missing = [room for room in rooms if room not in layout]
    assert not missing, f"README's layout does not mention {missing}"
    floors = [name for name, _ in FLOORS]
    assert [f for f in floors if f in layout] == floors, "README's layout names each floor"
