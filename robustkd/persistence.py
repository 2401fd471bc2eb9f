"""Saving models safely, and resuming long fits.

``joblib.dump``/``pickle`` store a whole fitted estimator, but **loading a pickle runs
code**: only load pickles you trust. :func:`save_weights` and :func:`load_weights` store
tensors only (``torch.save`` of state dicts, loaded with ``weights_only=True``), so a
model is restored from its constructor parameters, which you write in code, plus a
file that cannot execute anything.

:func:`fit_resumable` checkpoints a fit after every epoch (skorch's ``Checkpoint``) and,
when run again after an interruption, continues from the last finished epoch.
"""
import os

import torch
from skorch import NeuralNet
from skorch.callbacks import Checkpoint

from ._interrupts import is_ctrl_c, watch_sigint
from ._validation import not_fitted_error

__all__ = ["save_weights", "load_weights", "fit_resumable"]

_FORMAT = "robustkd-weights-1"


def _weight_modules(estimator):
    if not isinstance(estimator, NeuralNet):
        raise TypeError(f"estimator must be a robustkd or skorch net; got {type(estimator).__name__}")
    names = ["module_"] + (["teachers_"] if hasattr(estimator, "teachers_") else [])
    return {name: getattr(estimator, name) for name in names}


def save_weights(estimator, path):
    """Save a fitted net's weights (the student's and, for a distiller, its frozen teachers').

    Parameters
    ----------
    estimator : AdversarialTeacher, MultiTeacherDistiller or skorch net
        A fitted net.
    path : str or path-like
        File to write.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        The estimator is not fitted.
    """
    if not getattr(estimator, "initialized_", False):
        raise not_fitted_error(estimator, "saving it")
    state = {"format": _FORMAT, "class": type(estimator).__name__,
             "modules": {name: m.state_dict() for name, m in _weight_modules(estimator).items()}}
    torch.save(state, path)


def load_weights(estimator, path):
    """Initialise ``estimator`` and load weights saved by :func:`save_weights`.

    The file is read with ``torch.load(..., weights_only=True)``: it can hold tensors
    and plain containers only, never code. ``estimator`` must be built with the same
    architecture (for a distiller: teachers of the teachers' architecture, e.g.
    untrained modules; their weights come from the file).

    Parameters
    ----------
    estimator : AdversarialTeacher, MultiTeacherDistiller or skorch net
        An estimator constructed like the one that was saved.
    path : str or path-like
        File written by :func:`save_weights`.

    Returns
    -------
    estimator
        The same object, initialised, with the saved weights.

    Raises
    ------
    ValueError
        The file is not a robustkd weights file or does not match the estimator.
    """
    try:
        state = torch.load(path, map_location=estimator.device, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError or RuntimeError on anything but plain data
        raise ValueError(f"{os.fspath(path)!r} is not a weights-only file that can be loaded safely: {exc}") \
            from exc
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise ValueError(f"{os.fspath(path)!r} is not a robustkd weights file (format {_FORMAT})")
    if state["class"] != type(estimator).__name__:
        raise ValueError(f"the file holds a {state['class']}; got a {type(estimator).__name__} to load it into")
    if not getattr(estimator, "initialized_", False):
        estimator.initialize()
    modules = _weight_modules(estimator)
    if set(modules) != set(state["modules"]):
        raise ValueError(f"the file holds {sorted(state['modules'])}; the estimator has {sorted(modules)}")
    for name, module in modules.items():
        module.load_state_dict(state["modules"][name])
    if "teachers_" in modules:
        modules["teachers_"].eval().requires_grad_(False)
    return estimator


def fit_resumable(estimator, X, y, checkpoint_dir, **fit_params):
    """Fit with a checkpoint after every epoch; when run again, resume where it stopped.

    The first call fits from scratch and writes ``params.pt``, ``optimizer.pt`` and
    ``history.json`` to ``checkpoint_dir`` after each epoch. If the fit is interrupted
    (Ctrl-C propagates as ``KeyboardInterrupt``, even for plain skorch nets, whose ``fit``
    would swallow it), calling this function again with an estimator built the same way
    loads the last checkpoint and trains only the remaining ``max_epochs - finished``
    epochs, so the fit ends at the same epoch count with its history intact. robustkd's
    estimators with a ``random_state`` seed each epoch from ``(random_state, epoch)``, so
    the resumed fit ends with exactly the weights of an uninterrupted one (on the CPU).

    Parameters
    ----------
    estimator : skorch net
        An :class:`~robustkd.AdversarialTeacher`, :class:`~robustkd.MultiTeacherDistiller` or
        any skorch net; a checkpoint callback named ``"resume_checkpoint"`` is added to it.
    X, y : array-like
        Training data (the same on every call).
    checkpoint_dir : str or path-like
        Folder for the checkpoint files.
    **fit_params
        Passed to ``fit``/``partial_fit``.

    Returns
    -------
    estimator
        The fitted estimator.
    """
    checkpoint = Checkpoint(dirname=os.fspath(checkpoint_dir), monitor=None, f_params="params.pt",
                            f_optimizer="optimizer.pt", f_criterion=None, f_history="history.json",
                            f_pickle=None, load_best=False)
    callbacks = [cb for cb in (estimator.callbacks or []) if not (isinstance(cb, tuple)
                                                                  and cb[0] == "resume_checkpoint")]
    estimator.set_params(callbacks=callbacks + [("resume_checkpoint", checkpoint)])
    estimator.initialize()
    if os.path.exists(os.path.join(checkpoint.dirname, "history.json")):
        estimator.load_params(checkpoint=checkpoint)
    remaining = estimator.max_epochs - len(estimator.history)
    if remaining > 0:
        _fit_epochs(estimator, X, y, remaining, **fit_params)
    return estimator


def _fit_epochs(net, X, y, epochs, **fit_params):
    """skorch's ``partial_fit`` through its public methods, except that Ctrl-C is not swallowed.

    skorch catches ``KeyboardInterrupt`` in ``partial_fit`` and returns a half-trained net;
    here ``on_train_end`` runs as in skorch and then Ctrl-C propagates (a callback's stop does not).
    """
    net.notify("on_train_begin", X=X, y=y)
    with watch_sigint() as sigint:
        try:
            net.fit_loop(X, y, epochs=epochs, **fit_params)
        except KeyboardInterrupt as exc:
            net.notify("on_train_end", X=X, y=y)
            if is_ctrl_c(exc, sigint()):
                raise
            return                     # a callback stopped the fit (skorch's EarlyStopping)
    net.notify("on_train_end", X=X, y=y)
