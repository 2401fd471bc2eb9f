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
    assert "torch==2.14.1" in _read("requirements", "pinned.txt")
