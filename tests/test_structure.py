"""The shape of the package: no import cycle, no private name of another package or of a dependency, one path
per public name."""
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


def _is_private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_uses(module, path):
    """``(module it comes from, name)`` for every private module or name that ``module`` imports."""
    is_package = path.endswith("__init__.py")
    package = module if is_package else module.rsplit(".", 1)[0]
    uses = []
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            uses += [(base, alias.name) for alias in node.names if _is_private(alias.name)]
            if any(_is_private(part) for part in base.split(".")):
                uses.append((base, "*"))
        elif isinstance(node, ast.Import):
            uses += [(a.name, "*") for a in node.names if any(_is_private(p) for p in a.name.split("."))]
    return uses


def _owner(base, name):
    """The package that owns a private name: the package of its first private component."""
    parts = base.split(".") + ([name] if name != "*" else [])
    first = next(i for i, part in enumerate(parts) if _is_private(part))
    return ".".join(parts[:first])


def test_private_names_are_used_only_inside_their_package():
    """A private module or name (``_x``) of a robustkd package is imported only by modules of that package."""
    leaks = []
    for module, path in MODULES.items():
        for base, name in _private_uses(module, path):
            if not base.startswith("robustkd"):
                continue
            owner = _owner(base, name)
            if not (module == owner or module.startswith(owner + ".")):
                leaks.append(f"{module} uses {base}.{name if name != '*' else ''}".rstrip("."))
    assert not leaks, leaks
    # the check sees a leak when there is one
    assert _owner("robustkd.evaluation._robust", "robust_score") == "robustkd.evaluation"
    assert _owner("robustkd.distillation._threats", "*") == "robustkd.distillation"
    assert _owner("robustkd", "_validation") == "robustkd"


def test_no_private_name_of_a_dependency_is_imported():
    """Dependencies' private modules and names change between their releases: robustkd imports none
    (``robustkd._compat`` holds the one shim advertorch needs, by its public path)."""
    used = [f"{module}: {base}.{name}" for module, path in MODULES.items()
            for base, name in _private_uses(module, path)
            if base and not base.startswith("robustkd") and base != "__future__"]
    assert not used, used


def test_benchmarks_and_examples_use_public_names_only():
    """Scripts outside the library import no private robustkd module or name (nor override one)."""
    here = os.path.dirname(ROOT)
    scripts = [os.path.join(here, d, f) for d in ("benchmarks", "examples")
               for f in sorted(os.listdir(os.path.join(here, d))) if f.endswith(".py")]
    leaks = []
    for path in scripts:
        name = "scripts." + os.path.basename(path)[:-3]
        for base, used in _private_uses(name, path):
            if base.startswith("robustkd"):
                leaks.append(f"{os.path.relpath(path, here)} uses {base}.{used}")
    assert not leaks, leaks


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


@pytest.mark.parametrize("module", ["robustkd.distiller", "robustkd.teachers", "robustkd.scoring", "robustkd.checks",
                                    "robustkd.evaluation.robust", "robustkd.evaluation.report"])
def test_removed_re_export_modules_stay_removed(module):
    """One import path per public name: the old re-export paths do not import."""
    import importlib

    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(module)


def test_each_public_name_has_one_home_besides_the_top_level():
    """A name of ``robustkd.__all__`` is defined in one public module and re-exported by no other public module
    (the top level aside)."""
    import importlib

    import robustkd

    public = [m for m in MODULES if not any(_is_private(p) for p in m.split(".")) and m != "robustkd"
              and not m.endswith("__main__")]
    for name in robustkd.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(robustkd, name)
        homes = [m for m in public if getattr(importlib.import_module(m), name, None) is obj
                 and name in getattr(importlib.import_module(m), "__all__", [name])]
        assert len(homes) == 1, (name, homes)

