"""Sphinx extension: the command-line reference, generated from ``robustkd.cli.build_parser()``.

``.. robustkd-cli::`` renders the ``robustkd`` program and one section per subcommand (its description
and every option: flags, metavar, default, choices, help) as ``.. program::`` / ``.. option::``
blocks, so the page follows the parser and options can be linked with ``:option:``.

:func:`render_rst` is plain Python (no Sphinx needed): tests/test_packaging.py checks that its text
holds every option the parser defines.
"""
import argparse
import re

_INLINE = re.compile(r"([\\*`_|])")
_FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def _escape(text, parser=None):
    """Escape reStructuredText inline markup (``*_gm``, ``$X``, ``a_`` are literal in help texts).

    A flag of ``parser`` named in the text becomes an ``:option:`` link; other double dashes are kept
    from turning into en dashes.
    """
    flags = {flag for action in parser._actions for flag in action.option_strings} if parser else set()
    parts = _FLAG.split(" ".join(str(text).split()))
    return "".join(f":option:`{part}`" if i % 2 and part in flags
                   else _INLINE.sub(r"\\\1", part).replace("--", "-\\-") for i, part in enumerate(parts))


def _subcommands(parser):
    """``(name, one-line help, subparser)`` for each subcommand of ``parser``, in definition order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name), sub


def _expanded_help(action, prog):
    """``action.help`` with argparse's ``%(name)s`` substitutions done, as ``--help`` shows it."""
    if not action.help:
        return ""
    params = dict(vars(action), prog=prog)
    params = {k: v for k, v in params.items() if v is not argparse.SUPPRESS}
    for name in list(params):
        if hasattr(params[name], "__name__"):
            params[name] = params[name].__name__
    if params.get("choices") is not None:
        params["choices"] = ", ".join(str(c) for c in params["choices"])
    return action.help % params


def _signature(action, parser):
    """``--dataset {digits,mnist}, ...``: each flag with the metavar ``--help`` shows."""
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    formatter = parser._get_formatter()
    default = formatter._get_default_metavar_for_optional(action)
    args = formatter._format_args(action, default)
    return ", ".join(f"{flag} {args}" for flag in action.option_strings)


def _shown_default(action):
    """The default worth showing: not for flags, None (unset) or suppressed values (the CLI's own rule)."""
    if action.nargs == 0 or action.default is None or action.default is argparse.SUPPRESS:
        return None
    if isinstance(action.default, bool):
        return None
    if isinstance(action.default, (list, tuple)):
        return ",".join(str(v) for v in action.default)
    return str(action.default)


def _options(parser):
    lines = []
    for action in parser._actions:
        if not action.option_strings or action.help is argparse.SUPPRESS:
            continue
        lines += ["", f".. option:: {_signature(action, parser)}", ""]
        body = _escape(_expanded_help(action, parser.prog), parser)
        if body and body[-1] not in ".!?":
            body += "."
        lines.append("   " + (body[:1].upper() + body[1:] if body else ""))
        extra = []
        if action.choices is not None:
            extra.append("Choices: " + ", ".join(f"``{c}``" for c in action.choices) + ".")
        default = _shown_default(action)
        if default is not None:
            extra.append(f"Default: ``{default}``.")
        if action.required:
            extra.append("Required.")
        if extra:
            lines += ["", "   " + " ".join(extra)]
    return lines


def render_rst(parser, underline="-"):
    """The reference of ``parser`` and its subcommands as reStructuredText."""
    lines = [f".. program:: {parser.prog}", ""]
    if parser.description:
        lines += [_escape(parser.description, parser), ""]
    lines += ["::", "", f"    {parser.prog} <command> [options]", "", "Commands:", ""]
    commands = list(_subcommands(parser))
    for name, help_text, _ in commands:
        lines += [f"``{name}``", f"   {_escape(help_text or '')}", ""]
    lines += ["Options:"] + _options(parser) + [""]
    for name, _, sub in commands:
        title = f"``{sub.prog}``"
        lines += ["", title, underline * len(title), "", f".. program:: {sub.prog}", ""]
        if sub.description:
            lines += [_escape(sub.description, sub), ""]
        lines += ["::", "", f"    {sub.prog} [options]"] + _options(sub) + [""]
    return "\n".join(lines) + "\n"


def build_parser():
    from robustkd.cli import build_parser as build

    return build()


def setup(app):
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective
    from sphinx.util.nodes import nested_parse_with_titles

    class RobustkdCLI(SphinxDirective):
        """``.. robustkd-cli::``: the whole command-line reference (no arguments, no content)."""

        has_content = False

        def run(self):
            import robustkd.cli

            self.env.note_dependency(robustkd.cli.__file__)
            text = render_rst(build_parser())
            source = self.get_source_info()[0] or "<robustkd-cli>"
            content = StringList(text.splitlines(), source=source)
            node = nodes.section()
            node.document = self.state.document
            nested_parse_with_titles(self.state, content, node)
            return node.children

    app.add_directive("robustkd-cli", RobustkdCLI)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
