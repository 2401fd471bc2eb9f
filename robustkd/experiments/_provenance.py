"""What produced a run's numbers: package versions and each evaluation attack's implementation."""

__all__ = ["provenance"]


def provenance(attacks, module, eps):
    """What produced the numbers: package versions, and each attack's implementation and its parameters at
    the grid's first eps (step sizes scale with eps)."""
    from importlib.metadata import PackageNotFoundError, version

    from ..attacks import get_attack

    versions = {}
    for package in ("robustkd", "torch", "skorch", "advertorch", "scikit-learn", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    described = {}
    for name in attacks:
        attack = get_attack(name, module, eps=eps)
        described[name] = {"implementation": f"{type(attack).__module__}.{type(attack).__qualname__}",
                           "parameters_at_first_eps": repr(attack)}
    return {"versions": versions, "attacks": described}
