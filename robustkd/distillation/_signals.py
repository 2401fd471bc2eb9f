"""What the teachers tell a distiller's student on each training input: logits and input gradients,
cached once per fit or computed per batch, and the input-gradient term built from them."""

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import clone

from .._rng import check_seed
from .._validation import as_array, check_params, is_index_labels
from ..losses import gradient_matching_loss, input_gradients
from ..weighting import AdaptiveWeighter
from ._teachers import TeacherOutputs
from ._threats import threat_models_of, worst_case_logits

__all__ = ["TeacherSignalsMixin"]

#: ``norm_floor`` of the distiller's gradient term (:func:`robustkd.losses.gradient_matching_loss`).
GRADIENT_NORM_FLOOR = 0.1


class TeacherSignalsMixin:
    """The teachers' signals for :class:`~robustkd.MultiTeacherDistiller`.

    The host provides ``cache_teacher_outputs``, ``gradient_matching``, ``weighter_``,
    ``frozen_teachers_``, ``module_``, ``device``, ``train_split`` and ``history``.
    """

    def get_split_datasets(self, X, y=None, **fit_params):
        """skorch's split of a dataset that carries the teachers' logits (and input gradients) on each sample.

        The logits are computed once here, after ``check_data`` (so bad inputs get the same errors
        as for a teacher). With ``gradient_matching > 0`` so are the teachers' unit-norm input
        gradients: stored as their weighted mixture per sample when the weighting scheme is
        per-sample (the weights then never change during the fit; one gradient per sample), else
        per teacher (K per sample). A scheme that reads the teachers' logits on their own adversarial
        examples (``robust_precision``) gets its weights computed here too, once per sample. With
        ``cache_teacher_outputs=False`` only the first batch is run, as a check, and the teachers run
        on every training batch instead.
        """
        dataset = self.get_dataset(X, y)
        logits, grads, weights, start = [], [], [], 0
        for Xb, yb in self.get_iterator(dataset, training=False):
            xb = torch.as_tensor(Xb, device=self.device)
            z = self.frozen_teachers_.check(xb)
            if not logits:
                self._check_label_range(y, z.shape[2])
                for w in (self.weighter_, self.gradient_weighter_ if self.gradient_matching else None):
                    if w is not None and w.adversarial:
                        self._threat_models(w)          # fails early for teachers without one
            logits.append(z.cpu())
            if not self.cache_teacher_outputs:
                break
            index = torch.arange(start, start + len(xb))
            start += len(xb)
            yb = torch.as_tensor(yb, device=self.device).long()
            batch = {"X": xb, "index": index}
            if self.weighter_.adversarial:
                batch["teacher_weights"] = self.batch_weights(batch, yb, z)
                weights.append(batch["teacher_weights"].cpu())
            if self.gradient_matching:
                mix = (self.gradient_weighter_ or self.weighter_).per_sample
                w = self.gradient_weights(batch, yb, z) if mix else None
                grads.append(self._teacher_gradients(xb, yb, z, mix=mix, weights=w).cpu())
        dataset = TeacherOutputs(dataset, torch.cat(logits) if self.cache_teacher_outputs else None,
                                 torch.cat(grads) if grads else None, torch.cat(weights) if weights else None)
        if not self.train_split:
            return dataset, None
        return self.train_split(dataset, y, **fit_params) if y is not None else self.train_split(dataset, **fit_params)

    def _check_label_range(self, y, n_classes):
        y_idx = as_array(y)
        if y_idx is not None and is_index_labels(y_idx):  # other labels were checked in check_data
            y_idx = np.asarray(y_idx.cpu() if isinstance(y_idx, torch.Tensor) else y_idx)
            if y_idx.min() < 0 or y_idx.max() >= n_classes:
                raise ValueError(f"y holds labels outside the teachers' classes 0..{n_classes - 1}: "
                                 f"min {y_idx.min()}, max {y_idx.max()}")

    def batch_weights(self, X, y, teacher_logits=None):
        """The per-input teacher weights ``(n, K)`` of the distillation term for a batch: cached ones when
        ``X`` is a training batch that carries them, else the weighter's on the teachers' logits (clean, or
        on each teacher's own adversarial examples for a scheme such as ``robust_precision``)."""
        return self._weights_of(self.weighter_, "teacher_weights", X, y, teacher_logits)

    def gradient_weights(self, X, y, teacher_logits=None):
        """The per-input teacher weights ``(n, K)`` of the input-gradient term: ``gradient_weighter``'s, or
        the distillation term's (:meth:`batch_weights`) when it has none."""
        if self.gradient_weighter_ is None:
            return self.batch_weights(X, y, teacher_logits)
        return self._weights_of(self.gradient_weighter_, "gradient_weights", X, y, teacher_logits)

    def _weights_of(self, weighter, key, X, y, teacher_logits):
        if isinstance(X, dict) and key in X:
            return torch.as_tensor(X[key], device=self.device)
        y = torch.as_tensor(y, device=self.device).long()
        if weighter.adversarial:
            x = torch.as_tensor(X["X"] if isinstance(X, dict) else X, device=self.device)
            index = X.get("index") if isinstance(X, dict) else None
            return weighter(self.teacher_adversarial_logits(x, y, index, weighter), y)
        return weighter(self.teacher_logits(X) if teacher_logits is None else teacher_logits, y)

    def _threat_models(self, weighter=None):
        """Per teacher, the attack that measures its robust precision: PGD of its training attack's norm
        at the weighter's ``eps_scale`` times its training eps."""
        return threat_models_of(self.teachers, self.weighter_ if weighter is None else weighter)

    def teacher_adversarial_logits(self, x, y, index=None, weighter=None):
        """Each teacher's logits on its own adversarial examples of ``x`` (PGD of its norm, see
        :class:`~robustkd.AdaptiveWeighter`; ``weighter`` defaults to ``weighter_``), shape ``(n, K, C)``.
        With ``threat_models="union"``, each teacher is attacked in every threat model of the pool and its
        logits are those at the example where its true-class probability is lowest.

        With ``index`` (the samples' rows in the training data), sample i's random start comes from
        ``(random_state, i, k)`` alone (``k + K * (j + 1)`` for the j-th threat model of a union when it
        is not teacher k's own), so cached and per-batch weights are the same, and a union's attack in a
        teacher's own threat model is the one ``"own"`` runs.
        """
        weighter = self.weighter_ if weighter is None else weighter
        seed = check_seed(self.random_state)
        return worst_case_logits(self.teachers_, self._threat_models(weighter), weighter, x, y,
                                 None if index is None else np.asarray(index), 0 if seed is None else seed,
                                 self.clip_min, self.clip_max)

    def _build_weighter(self):
        w, params = self.weighter, self.get_params_for("weighter")
        if isinstance(w, type):
            w = w(**params)
        elif isinstance(w, AdaptiveWeighter):
            w = clone(w).set_params(**params)
        elif isinstance(w, str) or callable(w):
            w = AdaptiveWeighter(**{"scheme": w, **params})   # weighter__scheme wins over the name
        else:
            raise TypeError(f"weighter must be an AdaptiveWeighter, a scheme name or a callable; got weighter={w!r}")
        check_params(w, getattr(type(w), "_parameter_constraints", {}), prefix="weighter__")
        if not callable(w.scheme):  # validate the scheme's name up front; callables are checked on the first batch
            w(torch.zeros(1, 2, 2), torch.zeros(1, dtype=torch.long))
        return w

    def _build_gradient_weighter(self):
        """``gradient_weighter`` as an AdaptiveWeighter, or None for the distillation term's weights."""
        g = self.gradient_weighter
        if g is None:
            return None
        if isinstance(g, AdaptiveWeighter):
            g = clone(g)
        elif isinstance(g, str) or callable(g):
            g = AdaptiveWeighter(scheme=g)
        else:
            raise TypeError(f"gradient_weighter must be None, an AdaptiveWeighter, a scheme name or a callable; "
                            f"got {g!r}")
        check_params(g, getattr(type(g), "_parameter_constraints", {}), prefix="gradient_weighter.")
        return g

    def teacher_logits(self, X):
        """The frozen teachers' logits ``(n, K, C)`` for a batch: cached ones when ``X`` is a training
        batch that carries them, else computed on ``X`` (a tensor, or a batch dict ``{"X": ...}``)."""
        if isinstance(X, dict):
            if "teacher_logits" in X:
                return torch.as_tensor(X["teacher_logits"], device=self.device)
            X = X["X"]
        return self.frozen_teachers_(torch.as_tensor(X, device=self.device))

    def train_step_single(self, batch, **fit_params):
        """skorch's training step; with gradient matching, the clean inputs are made a leaf that requires
        grad first, so the student's forward pass serves both its logits and its input gradient."""
        if self.gradient_matching:
            Xi, yi = batch
            x = torch.as_tensor(Xi["X"] if isinstance(Xi, dict) else Xi, device=self.device)
            x = x.detach().requires_grad_(True)
            batch = ({**Xi, "X": x} if isinstance(Xi, dict) else x), yi
        return super().train_step_single(batch, **fit_params)

    def _student_gradients(self, y_pred, x, y, training):
        """The student's input gradients of its cross-entropy at ``x``: through ``y_pred`` when it was
        computed from ``x`` (the training step), else from a new forward pass."""
        if training and x.requires_grad and y_pred.requires_grad:
            grad, = torch.autograd.grad(F.cross_entropy(y_pred, y, reduction="sum"), x, create_graph=True,
                                        allow_unused=True)
            if grad is not None:
                return grad
        return input_gradients(self.module_, x, y, normalize=False, create_graph=training)

    def _teacher_gradients(self, x, y, teacher_logits, mix, weights=None):
        """The teachers' unit-norm input gradients ``(n, K, *D)``, or with ``mix`` their weighted
        mixture ``(n, *D)`` under ``weights`` (default: the weighter's for ``teacher_logits``)."""
        grads = self.frozen_teachers_.input_gradients(x, y)
        if not mix:
            return grads
        w = self.gradient_weights(x, y, teacher_logits) if weights is None else weights
        return (w.view(*w.shape, *([1] * (grads.dim() - 2))) * grads).sum(1)

    def gradient_target(self, X, y):
        """The direction the student's input gradient is pulled towards on each input:
        ``sum_k w_ik g_ik``, the weighted mixture of the teachers' unit-norm input gradients.

        Parameters
        ----------
        X : Tensor of shape (n, ...) or batch dict
            Inputs, or a training batch ``{"X": ..., "teacher_grads": ...}`` that carries the
            cached gradients (these are then returned, mixed with the batch's weights if stored
            per teacher).
        y : array-like of shape (n,)
            Class indices (as the student is trained on them).

        Returns
        -------
        Tensor of shape (n, ...)
            The target gradient per input (not normalised).
        """
        self.check_is_fitted()
        y = torch.as_tensor(y, device=self.device).long()
        grads, weights = self._gradient_terms(X, y, self.teacher_logits(X))
        return (weights.view(*weights.shape, *([1] * (grads.dim() - 2))) * grads).sum(1)

    def _gradient_terms(self, X, y, teacher_logits, weights=None):
        """Teacher gradients ``(n, K', *D)`` and their weights ``(n, K')`` for the gradient term: the
        cached mixture with weight 1 (K' = 1), cached per-teacher gradients, or fresh ones."""
        cached = X.get("teacher_grads") if isinstance(X, dict) else None
        x = torch.as_tensor(X["X"] if isinstance(X, dict) else X, device=self.device)
        if cached is not None and cached.dim() == x.dim():  # the weighted mixture, stored once per sample
            return torch.as_tensor(cached, device=self.device).unsqueeze(1), torch.ones(len(x), 1, device=self.device)
        if weights is None or self.gradient_weighter_ is not None:
            weights = self.gradient_weights(X, y, teacher_logits)
        if cached is None:
            return self._teacher_gradients(x, y, teacher_logits, mix=False), weights
        return torch.as_tensor(cached, device=self.device), weights

    def gradient_matching_term(self, y_pred, y_true, X, teacher_logits, weights, training=False):
        """:func:`robustkd.losses.gradient_matching_loss` of the student against the teachers on a batch.

        Parameters
        ----------
        y_pred : Tensor of shape (n, C)
            The student's logits on the clean inputs (in the training step, computed from them with
            their gradient, so no second forward pass is needed).
        y_true : Tensor of shape (n,), int64
            Class indices.
        X : Tensor of shape (n, ...) or batch dict
            The clean inputs, or a training batch carrying the cached teacher gradients.
        teacher_logits : Tensor of shape (n, K, C)
            The teachers' logits.
        weights : Tensor of shape (n, K)
            The per-input teacher weights.
        training : bool, default=False
            Keep the graph of the student's gradient (double backpropagation) and record the
            batch's mean cosine as ``grad_cos`` in the history.

        Returns
        -------
        Tensor (scalar)
            The term, in [0, 2], before its weight.
        """
        grads, grad_weights = self._gradient_terms(X, y_true, teacher_logits, weights)
        x = torch.as_tensor(X["X"] if isinstance(X, dict) else X, device=self.device)
        matching = gradient_matching_loss(self._student_gradients(y_pred, x, y_true, training), grads, grad_weights,
                                          norm_floor=GRADIENT_NORM_FLOOR)
        if training:
            self.history.record_batch("grad_cos", 1.0 - float(matching.detach()))
        return matching
