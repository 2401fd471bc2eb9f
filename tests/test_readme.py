"""The README's copy-paste commands are the ones CI and users run."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def test_ci_runs_exactly_the_readme_test_command():
    blocks = re.findall(r"```bash\n(.*?)\n```", _read("README.md"), re.S)
    test_cmd = next(b for b in blocks if "pytest" in b)
    ci_lines = [line for line in _read(".ci", "run").splitlines() if line and not line.startswith("#")]
    assert test_cmd in ci_lines
    assert "make -C docs html" in _read(".ci", "run")


def test_readme_main_command_runs_the_cli_on_embedded_data():
    blocks = re.findall(r"```bash\n(.*?)\n```", _read("README.md"), re.S)
    assert any(b.startswith("python3 -m venv") and b.endswith("robustkd reproduce --dataset digits") for b in blocks)


def test_the_pins_ci_installs_lie_inside_the_ranges_users_get():
    """requirements/pinned.txt pins torch and torchvision exactly, and setup.py's open ranges admit both pins."""
    import ast

    from packaging.requirements import Requirement

    pins = {}
    for line in _read("requirements", "pinned.txt").splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[req.name] = spec.version
    assert {"torch", "torchvision"} <= set(pins)
    setup = ast.parse(_read("setup.py"))
    ranges = next(node.value for node in ast.walk(setup)
                  if isinstance(node, ast.keyword) and node.arg == "install_requires")
    ranges = {Requirement(r).name: Requirement(r).specifier for r in ast.literal_eval(ranges)}
    for name, version in pins.items():
        assert name in ranges and ranges[name].contains(version), (name, version, ranges.get(name))


def test_every_python_block_of_the_readme_runs(tmp_path, monkeypatch):
    """The README's Python blocks run in order, as one script pasted by a user.

    To keep the suite fast, epochs are lowered to 1 (``max_epochs=N`` becomes ``max_epochs=1``) and
    pools run in this process (``n_jobs=2`` becomes ``n_jobs=1``); nothing else is changed.
    """
    blocks = re.findall(r"```python\n(.*?)\n```", _read("README.md"), re.S)
    assert len(blocks) >= 1
    script = "\n".join(blocks)
    script = re.sub(r"max_epochs=\d+", "max_epochs=1", script).replace("n_jobs=2", "n_jobs=1")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(script, "README.md", "exec"), namespace)
    student, paper = namespace["student"], namespace["paper"]
    assert student.weighter_.scheme == "uniform" and student.mean_teacher_weights().shape == (1, 3)
    assert (student.gradient_matching, student.feature_matching) == (2.0, "auto")   # the default, as it says
    assert student.feature_matching_ == 0.0                                    # no feature term on 8x8 images
    assert paper.weighter_.scheme == "confidence" and (paper.gradient_matching, paper.feature_matching) == (0, 0)
    assert len(namespace["pool"].teachers_) == 3


def test_every_robustkd_command_of_the_readme_and_docs_parses():
    """Each ``robustkd ...`` command shown in the README and the docs has options the command line accepts
    (the settings of a published table cannot silently stop existing)."""
    import glob
    import shlex

    from robustkd.cli import _validate, build_parser

    texts = [_read("README.md")] + [_read(os.path.relpath(p, ROOT)) for p in glob.glob(os.path.join(ROOT, "docs",
                                                                                                    "*.rst"))]
    commands = []
    for text in texts:
        joined = text.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.strip().split(" # ")[0].strip().rstrip("`")
            if line.startswith("robustkd reproduce") or line.startswith("robustkd evaluate"):
                commands.append(line)
    assert len(commands) >= 5
    parser = build_parser()
    for command in commands:
        args = parser.parse_args(shlex.split(command)[1:])
        _validate(args)
