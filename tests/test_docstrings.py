"""numpydoc validation: every public name's documented parameters match its signature."""
import os
import re

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKS = {"PR01", "PR02", "PR03", "PR10", "RT03"}  # same set as docs/conf.py


def api_names():
    """Every name listed in the API reference (docs/api.rst), plus robustkd.__all__."""
    import robustkd

    with open(os.path.join(ROOT, "docs", "api.rst"), encoding="utf-8") as f:
        listed = re.findall(r"^   ([A-Za-z_][\w.]*)$", f.read(), re.M)
    return sorted({f"robustkd.{n}" for n in listed} | {f"robustkd.{n}" for n in robustkd.__all__ if n[0] != "_"})


def doc_errors(name):
    return [(code, msg) for code, msg in numpydoc_validate.validate(name)["errors"] if code in CHECKS]


@pytest.mark.parametrize("name", api_names())
def test_public_docstring_matches_signature(name):
    assert doc_errors(name) == []


def bad_function(alpha, beta=1):
    """Documented with a parameter that does not exist.

    Parameters
    ----------
    alpha : int
        Something.
    gamma : int
        Not in the signature.

    Returns
    -------
    int
        Something.
    """
    return alpha


def test_the_check_catches_a_mismatch():
    codes = {code for code, _ in doc_errors(f"{__name__}.bad_function")}
    assert {"PR01", "PR02"} <= codes
