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

    Requires the net's ``attack``, ``eps``, ``clip_min``, ``clip_max`` and ``attack__*``
    parameters (``"attack"`` in ``prefixes_``). Crafting runs on the current ``module_`` in eval
    mode with frozen parameters (:func:`robustkd.attacks.perturb`), so no attack gradient reaches
    a weight update.
    """

    def training_attack(self):
        """The registry name of the training attack (``attack``; subclasses may resolve an ``"auto"``)."""
        return self.attack

    def check_training_attack(self, purpose):
        """Validate ``attack``, ``eps`` and the ``attack__*`` parameters before any training."""
        check_attack_name(self.training_attack())
        if check_eps(self.eps) <= 0:
            raise ValueError(f"eps must be > 0 for {purpose}; got eps={self.eps!r}")
        if self.training_attack() == "fgsm" and self.eps >= FGSM_WARN_EPS * (self.clip_max - self.clip_min):
            warnings.warn(f"FGSM training without a random start at eps={self.eps} is known to overfit "
                          "catastrophically (robust accuracy under PGD collapses to ~0 while FGSM accuracy rises); "
                          "prefer attack='fgsm_rs' or 'nfgsm' at the same cost, and watch robust accuracy with "
                          "robustkd.callbacks.RobustEarlyStopping", RobustKDWarning, stacklevel=3)
        self._attack_on(torch.nn.Identity())  # on a stand-in model: bad attack__ parameters fail before training

    def _attack_on(self, model):
        return get_attack(self.training_attack(), model, eps=self.eps, clip_min=self.clip_min, clip_max=self.clip_max,
                          **self.get_params_for("attack"))

    def build_attack(self):
        """The attack on the current ``module_`` (None if ``attack`` is None)."""
        return None if self.attack is None else self._attack_on(self.module_)

    def adversarial_examples(self, X, y):
        """Adversarial examples of the current module for a batch (tensors on the net's device)."""
        return perturb(self.build_attack(), torch.as_tensor(X, device=self.device),
                       torch.as_tensor(y, device=self.device))
