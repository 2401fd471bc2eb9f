"""Packaging metadata that must not drift: CITATION.cff, the sdist manifest, the generated CLI reference."""
import argparse
import importlib.util
import os
import re

import pytest

import robustkd
from robustkd.cli import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXTENSION = os.path.join(ROOT, "docs", "_ext", "cli_reference.py")


def _read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="module")
def cli_reference():
    spec = importlib.util.spec_from_file_location("cli_reference", EXTENSION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _subparsers(parser):
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def test_citation_cff_parses_and_matches_the_package():
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load(_read("CITATION.cff"))
    assert cff["cff-version"] == "1.2.0"
    assert cff["title"] == "robustkd"
    assert cff["version"] == robustkd.__version__  # bump both together
    assert cff["license"] == "BSD-3-Clause"
    paper = cff["preferred-citation"]
    assert paper["type"] == "article" and paper["year"] == 2025
    assert {a["family-names"] for a in paper["authors"]} == {"Munir", "Ullah", "Zaidi"}
    values = {i["value"] for i in paper["identifiers"]}
    assert "https://arxiv.org/abs/2507.20996" in values and "10.48550/arXiv.2507.20996" in values


def test_manifest_ships_the_files_the_sdist_needs():
    manifest = _read("MANIFEST.in")
    for name in ("LICENSE", "README.md", "CHANGES.md", "CITATION.cff", "requirements/pinned.txt"):
        assert os.path.exists(os.path.join(ROOT, name)), name
        assert re.search(rf"^include .*(?<!\S){re.escape(name)}(?!\S)", manifest, re.M), name


def _sections(text):
    """``{program: rendered text}``, split at each ``.. program::``."""
    parts = re.split(r"^\.\. program:: (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def test_cli_reference_renders_every_subcommand_and_option(cli_reference):
    parser = build_parser()
    sections = _sections(cli_reference.render_rst(parser))
    subcommands = _subparsers(parser)
    assert set(subcommands) >= {"evaluate", "reproduce"}
    assert set(sections) == {"robustkd"} | {f"robustkd {name}" for name in subcommands}
    for name, sub in [("robustkd", parser)] + [(f"robustkd {n}", s) for n, s in subcommands.items()]:
        text = sections[name]
        signatures = re.findall(r"^\.\. option:: (.+)$", text, flags=re.M)
        documented = {flag.split(" ")[0] for sig in signatures for flag in sig.split(", ")}
        defined = {flag for a in sub._actions if a.help is not argparse.SUPPRESS for flag in a.option_strings}
        assert documented == defined, name
        if sub.description:
            assert sub.description.split("--")[0] in text.replace("\\", "")
        for action in sub._actions:
            if not action.option_strings:
                continue
            shown = cli_reference._shown_default(action)
            if shown is not None:
                # the default sits in the option's own paragraph, before the next option
                own = text[text.index(f".. option:: {action.option_strings[0]}"):]
                own = own.split("\n.. option::", 1)[0]
                assert f"Default: ``{shown}``" in own, (name, action.option_strings)


def test_cli_reference_escapes_markup_and_links_options(cli_reference):
    text = cli_reference.render_rst(build_parser())
    reproduce = _sections(text)["robustkd reproduce"]
    assert r"\*\_gm" in reproduce                 # "*_gm students": no emphasis, no reference
    assert ":option:`--out`" in reproduce          # a flag of the same command becomes a link
    assert "Default: ``robustkd_out``" in reproduce


def test_docs_page_uses_the_generated_reference():
    assert re.search(r"^\.\. robustkd-cli::", _read("docs", "cli.rst"), re.M)
    assert re.search(r"^\s+cli$", _read("docs", "index.rst"), re.M)
    conf = _read("docs", "conf.py")
    assert '"cli_reference"' in conf


def test_results_tables_are_the_files_numbers():
    """docs/_ext/results_table.py renders a results.json: one row per method, each cell the file's accuracy."""
    import json
    import sys

    sys.path.insert(0, os.path.join(ROOT, "docs", "_ext"))
    try:
        from results_table import render_rows
    finally:
        sys.path.pop(0)
    summary = json.load(open(os.path.join(ROOT, "docs", "results", "data", "digits.json"), encoding="utf-8"))
    rows = render_rows(summary, fit_time=True)
    assert rows[0][:2] == ["method", "clean"] and rows[0][-1] == "fit s"
    assert [r[0] for r in rows[1:]] == summary["methods"]
    eps = [float(h.split()[1]) for h in rows[0][2:-1]]
    cell = {(r["method"], r["attack"], r["eps"]): r["accuracy"] for r in summary["results"]}
    for row in rows[1:]:
        assert row[1] == f"{cell[(row[0], 'clean', 0.0)]:.3f}"
        assert row[2:-1] == [f"{cell[(row[0], 'worst_case', e)]:.3f}" for e in eps]
