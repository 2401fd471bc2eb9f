"""Sphinx extension: result tables built from a ``results.json`` written by ``robustkd reproduce``.

``.. results-table:: data/digits.json`` renders one row per model and one column per eps: clean accuracy and,
by default, the worst case per sample over every attack of the run (``:attack: autoattack`` for another
attack's cells), with each model's fit time (``:fit-time:``). The figures on the page are then the file's, not
a copy typed by hand. :func:`render_rows` is plain Python, so tests can check the table against the file.
"""
import json
import os

from docutils import nodes
from docutils.parsers.rst import Directive, directives


def render_rows(summary, attack="worst_case", fit_time=False):
    """The table of a run: a header row, then one row per method (strings)."""
    results = summary["results"]
    eps = sorted({r["eps"] for r in results if r["attack"] == attack and r["eps"] is not None})
    cell = {(r["method"], r["attack"], r["eps"]): r["accuracy"] for r in results}
    header = ["method", "clean"] + [f"eps {e:g}" for e in eps] + (["fit s"] if fit_time else [])
    rows = [header]
    for m in summary["methods"]:
        row = [m, f"{cell[(m, 'clean', 0.0)]:.3f}"]
        row += [f"{cell[(m, attack, e)]:.3f}" if (m, attack, e) in cell else "" for e in eps]
        if fit_time:
            seconds = summary.get("timings", {}).get(m)
            row.append("" if seconds is None else f"{seconds:.1f}")
        rows.append(row)
    return rows


class ResultsTable(Directive):
    required_arguments = 1
    option_spec = {"attack": directives.unchanged, "fit-time": directives.flag}

    def run(self):
        env = self.state.document.settings.env
        source_dir = os.path.dirname(env.doc2path(env.docname))
        path = os.path.normpath(os.path.join(source_dir, self.arguments[0]))
        env.note_dependency(path)
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
        rows = render_rows(summary, self.options.get("attack", "worst_case"), "fit-time" in self.options)
        table = nodes.table()
        group = nodes.tgroup(cols=len(rows[0]))
        table += group
        group.extend(nodes.colspec(colwidth=1) for _ in rows[0])
        for part, part_rows in ((nodes.thead(), rows[:1]), (nodes.tbody(), rows[1:])):
            for values in part_rows:
                row = nodes.row()
                for value in values:
                    entry = nodes.entry()
                    entry += nodes.paragraph(text=value)
                    row += entry
                part += row
            group += part
        return [table]


def setup(app):
    app.add_directive("results-table", ResultsTable)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
