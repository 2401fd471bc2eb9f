"""The ``repr`` of robustkd's own attacks: their class and every parameter, as set."""

__all__ = ["ParamsRepr"]


class ParamsRepr:
    """``Name(param=value, ...)`` in the order ``__init__`` set them, leaving out the model and internal state.

    The repr is an attack's provenance (``results.json``) and tells restarts of one attack apart, so it
    must list every parameter; subclasses name what is not a parameter in ``_not_params``.
    """

    _not_params = ("predict",)

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k not in self._not_params)
        return f"{type(self).__name__}({params})"
