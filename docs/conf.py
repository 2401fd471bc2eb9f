"""Sphinx configuration for robustkd. Build: ``make -C docs html`` (warnings are errors)."""
import os
import sys
import warnings

sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("_ext"))  # local extensions: cli_reference, results_table
import robustkd  # noqa: E402

project = "robustkd"
author = "the robustkd developers"
copyright = "2026, the robustkd developers"
version = release = robustkd.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # serves MathJax from the built site: formulas render without internet
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "cli_reference",  # _ext/cli_reference.py: the command-line page, from robustkd.cli.build_parser()
    "results_table",  # _ext/results_table.py: result tables from a run's results.json
]

autosummary_generate = True
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
    # scikit-learn's metadata-routing setters are generated on every estimator class
    "exclude-members": "set_fit_request, set_score_request, set_predict_request, set_predict_proba_request, "
                       "set_partial_fit_request",
}
autodoc_inherit_docstrings = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# Parameters documented against each signature; tests/test_docstrings.py runs the same check.
numpydoc_validation_checks = {"PR01", "PR02", "PR03", "PR10", "RT03"}
# methods are documented where they add to skorch's; the check covers modules, classes and functions
numpydoc_validation_exclude = {r"\.[A-Z]\w*\.\w+$"}

templates_path = ["_templates"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip",
                    "auto_examples/*.md5", "auto_examples/*.json", "_intersphinx"]
html_theme = "alabaster"
html_static_path = []

# Remote inventories first; the small local fallbacks in _intersphinx/ (made by make_inventories.py)
# keep offline builds (CI has no internet) free of "failed to reach" warnings.
_fallback = os.path.join(os.path.dirname(__file__), "_intersphinx")
intersphinx_mapping = {
    name: (url, (None, os.path.join(_fallback, f"{name}.inv")))
    for name, url in {
        "python": "https://docs.python.org/3/",
        "numpy": "https://numpy.org/doc/stable/",
        "torch": "https://docs.pytorch.org/docs/stable/",
        "sklearn": "https://scikit-learn.org/stable/",
        "skorch": "https://skorch.readthedocs.io/en/stable/",
    }.items()
}
intersphinx_timeout = 5

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
}

warnings.filterwarnings("ignore", category=UserWarning, message="Matplotlib is currently using agg")
