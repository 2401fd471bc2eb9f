"""skorch callbacks that track robustness while training."""
from skorch.callbacks import Callback

from .attacks import check_eps
from .scoring import robust_score

__all__ = ["RobustAccuracy"]


class RobustAccuracy(Callback):
    """Record accuracy under attack on a held-out slice after every epoch.

    The score lands in the net's ``history`` under ``name`` (shown by skorch's
    ``PrintLog`` when ``verbose``), e.g. ``net.history[:, "robust_acc"]``. Use data
    held out from training (not the test set) when the value guides model selection.

    Parameters
    ----------
    X, y : array-like
        The held-out slice (inputs in the attack's clip range, labels as logit indices).
    attack : str, default="pgd"
    eps : float, default=0.1
    name : str, default="robust_acc"
    random_state : int, default=0
        Fixed, so epochs are compared on the same attack randomness.
    **attack_params
        Passed to :func:`robustkd.scoring.robust_score` (``nb_iter``, ``batch_size``, ...).

    Examples
    --------
    >>> from robustkd import AdversarialTeacher, RobustAccuracy, SmallCNN, load_digits_images
    >>> X, y = load_digits_images()
    >>> cb = RobustAccuracy(X[1500:], y[1500:], attack="fgsm", eps=0.1)
    >>> net = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), attack="fgsm", max_epochs=2,
    ...                          train_split=None, verbose=0, callbacks=[cb]).fit(X[:300], y[:300])
    >>> len(net.history[:, "robust_acc"])
    2
    """

    def __init__(self, X, y, attack="pgd", eps=0.1, name="robust_acc", random_state=0, **attack_params):
        self.X = X
        self.y = y
        self.attack = attack
        self.eps = eps
        self.name = name
        self.random_state = random_state
        self.attack_params = attack_params

    def initialize(self):
        check_eps(self.eps)
        return self

    def on_epoch_end(self, net, **kwargs):
        score = robust_score(net, self.X, self.y, self.attack, eps=self.eps, random_state=self.random_state,
                             **self.attack_params)
        net.history.record(self.name, score)
