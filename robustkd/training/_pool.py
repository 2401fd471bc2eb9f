"""One adversarially trained clone of a teacher per attack, fitted in parallel with joblib."""
import numbers

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from .._rng import check_random_state_int
from ..attacks import available_attacks, check_attack_name
from ._teacher import AdversarialTeacher

__all__ = ["TeacherPool"]


def _fit_one(teacher, X, y):
    return teacher.fit(X, y)


def teacher_entries(attacks):
    """``[(name, eps or None)]`` of a pool's ``attacks``: names, or ``(name, eps)`` pairs with their own budget."""
    attacks = [attacks] if isinstance(attacks, (str, tuple)) and _is_pair_or_name(attacks) else list(attacks)
    if not attacks:
        raise ValueError("attacks must name at least one attack; got an empty list")
    entries = []
    for a in attacks:
        if isinstance(a, str):
            check_attack_name(a, name="attack in attacks")
            entries.append((a, None))
        elif (isinstance(a, (tuple, list)) and len(a) == 2 and isinstance(a[0], str)
              and isinstance(a[1], numbers.Real) and not isinstance(a[1], bool)):
            check_attack_name(a[0], name="attack in attacks")
            if not 0 < a[1] < float("inf"):
                raise ValueError(f"a teacher's budget must be finite and > 0; got {a!r} in attacks")
            entries.append((a[0], float(a[1])))
        else:
            raise ValueError(f"attacks holds attack names or (name, eps) pairs; got {a!r}")
    return entries


def _is_pair_or_name(a):
    return isinstance(a, str) or (len(a) == 2 and isinstance(a[0], str) and isinstance(a[1], numbers.Real))


class TeacherPool(ClassifierMixin, BaseEstimator):
    """One adversarially trained clone of ``teacher`` per attack, fitted in parallel.

    A fitted pool is also the plain-ensemble baseline: ``predict_proba`` averages
    the teachers' probabilities.

    Parameters
    ----------
    teacher : AdversarialTeacher
        Template, cloned once per attack (its ``attack`` and ``random_state`` are set
        per clone; everything else is shared). Its ``attack__*`` parameters go to the
        attacks that take them: ``attack__nb_iter=5`` sets PGD's and MIM's steps and is
        left out of the FGSM teacher.
    attacks : sequence of str or (str, float) pairs, default=("fgsm", "pgd", "mim")
        One teacher per entry: an attack name (the teacher trains at the template's ``eps``) or a
        pair ``(name, eps)`` with its own budget, so one pool can hold teachers of different threat
        models and budgets, e.g. ``[("fgsm_rs", 0.1), ("pgd_l2", 1.5), ("nfgsm", 0.2)]`` (an L2
        attack's eps is an L2 radius).
    n_jobs : int, optional
        Teachers fitted in parallel with joblib; respects ``joblib.parallel_config``,
        so a Dask or Ray backend runs them on a cluster unchanged.
    random_state : int, optional
        Each teacher gets its own seed drawn from it.
    verbose : int, default=0
        joblib's verbosity.

    Attributes
    ----------
    teachers_ : list of AdversarialTeacher
        Fitted teachers, in the order of ``attacks``.
    classes_ : ndarray

    Examples
    --------
    >>> from robustkd import AdversarialTeacher, SmallCNN, TeacherPool, load_digits_images
    >>> X, y = load_digits_images()
    >>> template = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), max_epochs=1,
    ...                               train_split=None, verbose=0)
    >>> pool = TeacherPool(template, attacks=["fgsm", "pgd"], random_state=0).fit(X[:100], y[:100])
    >>> [t.attack for t in pool.teachers_]
    ['fgsm', 'pgd']
    """

    def __init__(self, teacher, attacks=("fgsm", "pgd", "mim"), *, n_jobs=None, random_state=None, verbose=0):
        self.teacher = teacher
        self.attacks = attacks
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y):
        """Fit one clone of ``teacher`` per attack.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Training inputs in the attacks' clip range.
        y : array-like of shape (n_samples,)
            Labels; -1 marks an unlabeled sample, left out or pseudo-labelled as the template's
            ``pseudo_labeler`` says (see :class:`AdversarialTeacher`).

        Returns
        -------
        self : TeacherPool
            The fitted pool.
        """
        if not isinstance(self.teacher, AdversarialTeacher):
            raise TypeError(f"teacher must be an AdversarialTeacher; got {type(self.teacher).__name__}")
        entries = teacher_entries(self.attacks)
        seeds = check_random_state_int(self.random_state, len(entries))
        clones = [self._clone_for(a, e, s) for (a, e), s in zip(entries, seeds)]
        self.teachers_ = Parallel(n_jobs=self.n_jobs, verbose=self.verbose)(
            delayed(_fit_one)(t, X, y) for t in clones)
        self.classes_ = self.teachers_[0].classes_
        return self

    def _clone_for(self, attack, eps, seed):
        accepts = available_attacks()[attack]["accepts"]
        shared = type(self.teacher)._shared_params      # fitted models the teacher reads (a pseudo-labeler)
        params = {k: v if k in shared else clone(v, safe=False)
                  for k, v in self.teacher.get_params(deep=False).items()
                  if not k.startswith("attack__") or k[len("attack__"):] in accepts}
        params.update(attack=attack, random_state=seed, **({} if eps is None else {"eps": eps}))
        return type(self.teacher)(**params)

    def predict_proba(self, X):
        """Mean of the teachers' class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Inputs.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Averaged probabilities.
        """
        check_is_fitted(self, "teachers_")
        return np.mean([t.predict_proba(X) for t in self.teachers_], axis=0)

    def predict(self, X):
        """Class with the highest mean probability (a logit index, or the label when the teachers were
        fitted on non-index labels such as strings).

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Inputs.

        Returns
        -------
        ndarray of shape (n_samples,)
            Predicted classes.
        """
        indices = self.predict_proba(X).argmax(axis=1)
        return np.asarray(self.classes_)[indices] if getattr(self.teachers_[0], "encodes_labels_", False) else indices
