"""What adversarial training needs, shared by the teacher and the adversarial student."""
import warnings

import torch

from ..attacks import check_attack_name, check_eps, get_attack, perturb
from ..exceptions import RobustKDWarning

#: FGSM training without a random start above this share of the input range is known to overfit
#: catastrophically (public re-runs on MNIST at eps 0.3: 99.6% under FGSM, 0.0% under PGD).
FGSM_WARN_EPS = 0.25

__all__ = ["AdversarialTrainingMixin"]


class AdversarialTrainingMixin:
    """Builds and runs the training attack of a skorch net.

    The host names its training attack's parameters: ``attack_param`` (the attack's registry name; the
    attack's own parameters are ``<attack_param>__*``, so that prefix is in ``prefixes_``) and ``eps_param``
    (its budget), and has ``clip_min`` and ``clip_max``. Crafting runs on the current ``module_`` in eval mode
    with frozen parameters (:func:`robustkd.attacks.perturb`), so no attack gradient reaches a weight update.
    """

    #: The host's parameter that names its training attack.
    attack_param = "attack"
    #: The host's parameter that holds its training attack's budget.
    eps_param = "eps"

    def training_attack(self):
        """The registry name of the training attack (None: the net trains on clean inputs only)."""
        return getattr(self, self.attack_param)

    def training_eps(self):
        """The training attack's budget (None without a training attack)."""
        return None if self.training_attack() is None else getattr(self, self.eps_param)

    def check_training_attack(self, purpose):
        """Validate the training attack, its budget and its ``<attack_param>__*`` parameters before any training."""
        check_attack_name(self.training_attack(), self.attack_param)
        eps = self.training_eps()
        if check_eps(eps, self.eps_param) <= 0:
            raise ValueError(f"{self.eps_param} must be > 0 for {purpose}; got {self.eps_param}={eps!r}")
        if self.training_attack() == "fgsm" and eps >= FGSM_WARN_EPS * (self.clip_max - self.clip_min):
            warnings.warn(f"FGSM training without a random start at {self.eps_param}={eps} is known to overfit "
                          "catastrophically (robust accuracy under PGD collapses to ~0 while FGSM accuracy rises); "
                          "prefer 'fgsm_rs' or 'nfgsm' at the same cost, and watch robust accuracy with "
                          "robustkd.callbacks.RobustEarlyStopping", RobustKDWarning, stacklevel=3)
        self._attack_on(torch.nn.Identity())  # on a stand-in model: bad attack parameters fail before training

    def _attack_on(self, model, scale=1.0):
        return get_attack(self.training_attack(), model, eps=self.training_eps() * scale, clip_min=self.clip_min,
                          clip_max=self.clip_max, **self.get_params_for(self.attack_param))

    def eps_scale(self):
        """The share of the budget the training attack uses now: ``eps_scale_`` while
        :class:`~robustkd.callbacks.EpsilonWarmup` ramps it up, else 1. Scores and model selection always use
        the whole budget (``training_eps()``)."""
        return getattr(self, "eps_scale_", 1.0)

    def build_attack(self):
        """The attack on the current ``module_`` at the current share of the budget (None without a training
        attack or while that share is 0)."""
        if self.training_attack() is None or self.eps_scale() == 0:
            return None
        return self._attack_on(self.module_, self.eps_scale())

    def adversarial_examples(self, X, y):
        """Adversarial examples of the current module for a batch (tensors on the net's device); the clean
        inputs while a warm-up holds the budget at 0."""
        x = torch.as_tensor(X, device=self.device)
        attack = self.build_attack()
        if attack is None:
            return x
        return perturb(attack, x, torch.as_tensor(y, device=self.device))
