"""The shape of the package: small modules, no import cycles, only skorch's public names."""
import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "robustkd")


def _modules():
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                yield (rel[: -len(".__init__")] if rel.endswith(".__init__") else rel), path


MODULES = dict(_modules())


def _imports(module, path):
    """robustkd modules that ``module`` imports anywhere in its file, functions included."""
    is_package = path.endswith("__init__.py")
    package = module if is_package else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("robustkd")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            if not base.startswith("robustkd"):
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return {m for m in found if m in MODULES and m != module}


def test_no_module_is_over_300_lines():
    long = {m: n for m, p in MODULES.items() if (n := len(open(p, encoding="utf-8").read().splitlines())) > 300}
    assert not long, long


def test_no_import_cycle_between_robustkd_modules_counting_imports_inside_functions():
    graph = {m: _imports(m, p) for m, p in MODULES.items()}
    assert graph["robustkd.distillation._distiller"] >= {"robustkd.training", "robustkd.losses"}  # the parser works
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def _skorch_private_names():
    import torch
    from skorch import NeuralNetClassifier

    net = NeuralNetClassifier(torch.nn.Linear(2, 2), criterion=torch.nn.CrossEntropyLoss).initialize()
    names = {n for n in dir(type(net)) if n.startswith("_") and not n.startswith("__")}
    names |= {n for n in vars(net) if n.startswith("_") and not n.startswith("__")}
    return names


def test_no_use_of_skorch_private_attributes():
    private = _skorch_private_names()
    assert {"_set_training", "_criteria", "_modules"} <= private
    used = set()
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, ast.Attribute) and node.attr in private:
                used.add((module, node.attr))
            if isinstance(node, ast.FunctionDef) and node.name in private:
                used.add((module, node.name))
    assert not used, sorted(used)


@pytest.mark.parametrize("name", ["register_attack", "register_scheme", "register_dataset"])
def test_registration_functions_are_importable_from_the_package(name):
    import robustkd

    assert callable(getattr(robustkd, name)) and name in robustkd.__all__
