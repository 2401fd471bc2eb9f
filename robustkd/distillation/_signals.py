"""What the teachers tell a distiller's student on each training input: logits and input gradients,
cached once per fit or computed per batch, and the input-gradient term built from them."""
import numpy as np
import torch
import torch.nn.functional as F

from .._validation import as_array, is_index_labels
from ..losses import gradient_matching_loss, input_gradients
from ._teachers import TeacherOutputs

__all__ = ["TeacherSignalsMixin"]


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
        per teacher (K per sample). With ``cache_teacher_outputs=False`` only the first batch is
        run, as a check, and the teachers run on every training batch instead.
        """
        dataset = self.get_dataset(X, y)
        logits, grads = [], []
        for Xb, yb in self.get_iterator(dataset, training=False):
            xb = torch.as_tensor(Xb, device=self.device)
            z = self.frozen_teachers_.check(xb)
            if not logits:
                self._check_label_range(y, z.shape[2])
            logits.append(z.cpu())
            if not self.cache_teacher_outputs:
                break
            if self.gradient_matching:
                yb = torch.as_tensor(yb, device=self.device).long()
                grads.append(self._teacher_gradients(xb, yb, z, mix=self.weighter_.per_sample).cpu())
        dataset = TeacherOutputs(dataset, torch.cat(logits) if self.cache_teacher_outputs else None,
                                 torch.cat(grads) if grads else None)
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

    def _teacher_gradients(self, x, y, teacher_logits, mix):
        """The teachers' unit-norm input gradients ``(n, K, *D)``, or with ``mix`` their weighted
        mixture ``(n, *D)`` under the weighter's weights for ``teacher_logits``."""
        grads = self.frozen_teachers_.input_gradients(x, y)
        if not mix:
            return grads
        w = self.weighter_(teacher_logits, y)
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
        if weights is None:
            weights = self.weighter_(teacher_logits, y)
        if cached is None:
            return self._teacher_gradients(x, y, teacher_logits, mix=False), weights
        cached = torch.as_tensor(cached, device=self.device)
        if cached.dim() == x.dim():  # the weighted mixture, stored once per sample
            return cached.unsqueeze(1), torch.ones(len(x), 1, device=self.device)
        return cached, weights

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
        matching = gradient_matching_loss(self._student_gradients(y_pred, x, y_true, training), grads, grad_weights)
        if training:
            self.history.record_batch("grad_cos", 1.0 - float(matching.detach()))
        return matching
