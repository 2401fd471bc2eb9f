"""The settings of :func:`robustkd.experiments.reproduce`: one dataclass whose fields also define the
command line's options (type, default, help, choices), so nothing is written twice.

Imports stay light (no torch): the command line builds its parser from here.
"""
import dataclasses
import numbers

from .._names import ATTACKS, SCHEMES, TRAINING_ONLY
from ..datasets import dataset_names

__all__ = ["ExperimentConfig", "PROTOCOLS", "teacher_spec"]

#: The weight of the gradient-matching students' input-gradient term (MultiTeacherDistiller's default).
GRADIENT_MATCHING = 2.0
#: The weight of the default student's feature term (MultiTeacherDistiller's default: "auto", resolved for the
#: data set's image size by :func:`robustkd.distillation.resolve_feature_matching`).
FEATURE_MATCHING = "auto"


def teacher_spec(entry):
    """``(attack, eps or None)`` of a teacher entry ``"attack"`` or ``"attack:eps"`` (its own budget)."""
    name, sep, budget = str(entry).partition(":")
    if not sep:
        return name, None
    try:
        eps = float(budget)
    except ValueError:
        raise ValueError(f"a teacher is attack or attack:eps (e.g. pgd_l2:1.5); got {entry!r}") from None
    if not 0 < eps < float("inf"):
        raise ValueError(f"a teacher's eps must be finite and > 0; got {entry!r}")
    return name, eps

_QUICK = dict(epochs=15, attacks=("fgsm", "pgd", "mim"), train_eps=0.2,
              eval_attacks=("fgsm", "pgd", "bim", "mim", "cw_linf"), eps=(0.05, 0.1, 0.2, 0.3), autoattack_n_test=0,
              lr=1e-3, lr_schedule="constant", student_attack="pgd", valid_size=0)

#: The settings each data set uses for the fields left unset (None): the protocol of ``robustkd reproduce``.
#: digits (and MNIST) keep the small protocol; Fashion-MNIST uses the full-size one: every training and
#: test image, fast single-step teachers with a one-cycle learning rate, each teacher's most robust epoch
#: on 1,000 held-out training images, the cheap attacks on every test image and AutoAttack on the first
#: 1,000 (its cost on a CPU; one image is 0.1 points).
PROTOCOLS = {
    "digits": _QUICK,
    "mnist": _QUICK,
    "fashion-mnist": dict(epochs=10, attacks=("fgsm", "fgsm_rs", "nfgsm"), train_eps=0.1,
                          eval_attacks=("fgsm", "pgd"), eps=(0.05, 0.1, 0.2), autoattack_n_test=1000, lr=4e-3,
                          lr_schedule="onecycle", student_attack="fgsm_rs", valid_size=1000),
}


def _field(default, help, kind=None, choices=None):
    """A config field with its command-line metadata (``kind``: "names", "budgets", "ints", "auto_or_float" or
    None)."""
    return dataclasses.field(default=default, metadata={"help": help, "kind": kind, "choices": choices})


@dataclasses.dataclass
class ExperimentConfig:
    """Settings of :func:`~robustkd.experiments.reproduce`; every field is an option of ``robustkd reproduce``.

    Parameters
    ----------
    dataset : str, default="digits"
        A name from :func:`robustkd.datasets.dataset_names` (``"digits"``, ``"mnist"``,
        ``"fashion-mnist"``): digits is split 75/25, the others use their own test sets.
    data_home : str, optional
        Folder holding ``MNIST/raw`` or ``FashionMNIST/raw``.
    download : bool, default=False
        Download MNIST/Fashion-MNIST when missing.
    out : str, default="robustkd_out"
        Output folder; fitted models go to ``out/models`` and are reused.
    epochs : int, optional
        Epochs for every model.
    attacks : tuple of str, optional
        One adversarially trained teacher per entry: an attack name (trained at ``train_eps``) or
        ``"attack:eps"`` with its own budget (an L2 radius for an L2 attack), e.g.
        ``("fgsm_rs", "pgd_l2:1.5", "nfgsm:0.2")``, a pool of different threat models. The students are
        then also scored on the **union** of the teachers' threat models (``results`` rows with
        ``attack="union"``).
    train_eps : float, optional
        Budget of the teachers' (and the adversarial student's) training attacks.
    eval_attacks : tuple of str, optional
        Attacks of the evaluation, besides AutoAttack.
    autoattack : bool, default=True
        Also evaluate with ``"autoattack"`` (the standard version: APGD-CE, APGD-T, FAB-T, Square)
        and include it in the worst case; ``--no-autoattack`` leaves it out for quick runs.
    autoattack_n_test : int, optional
        Run AutoAttack, and so the worst case, on the first ``autoattack_n_test`` test images only
        (the same images for every model; the test split is already a random subset): its cost on a
        CPU. The other attacks still use every test image; ``n_samples`` in the results says which.
        0: every test image.
    eps : tuple of float, optional
        Evaluation budgets.
    lr : float, optional
        Learning rate of every model (Adam), the peak of a one-cycle schedule.
    lr_schedule : {"constant", "onecycle"}, optional
        ``"onecycle"``: :class:`~robustkd.callbacks.OneCycleSchedule` (fast adversarial training's schedule).
    student_attack : str, optional
        Training attack of the adversarial student.
    valid_size : int, optional
        Training images held out for robust model selection: each teacher keeps its epoch with the best
        PGD accuracy on them (:class:`~robustkd.callbacks.RobustEarlyStopping`, also a guard against
        catastrophic overfitting); 0: none, every image trains.
    scheme : str, default="confidence"
        Weighting scheme of the adaptive student.
    gradient_matching : float, default=2.0
        Weight of the input-gradient term of the ``*_gm`` students (the distiller's default); 0 leaves
        those students out.
    feature_matching : "auto" or float, default="auto"
        Weight of the feature term of ``mtkd_default`` (the distiller's default; ``"auto"``: 10 for images at
        least 16 pixels a side, as Fashion-MNIST's and MNIST's, 0 for digits' 8x8); the other students have none.
    temperature : float, default=4.0
        Distillation temperature.
    alpha : float, default=0.9
        Share of the distillation term.
    adversarial_student : bool, default=True
        Also train the ARD-style student (``--no-adversarial-student`` turns it off).
    student_channels : tuple of two int, optional
        Channels of every student's two conv blocks (:class:`~robustkd.SmallCNN`'s ``channels``); default the
        teachers' ``(32, 64)``.
    student_hidden : int, optional
        Width of every student's hidden layer; default the teachers' 128. A student of another size than the
        teachers adds the row ``direct_<student_attack>``: that architecture adversarially trained directly,
        with the teachers' attack budget, schedule and robust model selection, the baseline a distilled student
        has to beat. ``results.json`` holds every model's parameter count (``parameters``).
    labeled : int, optional
        Keep the labels of this many training images (stratified, drawn with ``seed``) and mark the others
        unlabeled (-1): the standard model and the teachers train on the labeled images, every student on all
        of them (:meth:`~robustkd.MultiTeacherDistiller.fit` takes -1 as unlabeled), and two rows are added:
        ``mtkd_default_labeled`` (the default student on the labeled images alone) and ``mtkd_default_rst``
        (the default student of ``teacher_rst_*``, teachers trained by robust self-training: the unlabeled
        images pseudo-labelled by the standard model). Default: every image labeled.
    n_train, n_test : int, optional
        Subsample the training and test sets.
    batch_size : int, default=64
        Training batch size.
    n_jobs : int, optional
        Teachers trained in parallel.
    eval_jobs : int, default=-1
        Threads attacking the test images at once, one core each (-1: every core): ``n_jobs`` of
        :func:`~robustkd.evaluation.robustness_report`. Each sample's attack depends on that sample alone, so
        the results are those of one thread (up to float rounding).
    device : str, default="cpu"
        Torch device (``"auto"``: CUDA when available).
    seed : int, default=0
        Seeds the split, the models and the attacks.

    Notes
    -----
    The fields documented as optional default to None: the data set's protocol (:data:`PROTOCOLS`) fills
    them in :meth:`resolved`. digits and MNIST: 15 epochs, teachers FGSM, PGD and MIM at eps 0.2, every
    evaluation attack at eps 0.05 to 0.3. Fashion-MNIST: the full-size protocol (every image; 10 epochs;
    teachers FGSM, FGSM-RS and N-FGSM at eps 0.1 with a one-cycle learning rate peaking at 0.004 and robust
    model selection on 1,000 held-out training images, the teachers training on the other 59,000; FGSM and
    PGD on every test image and AutoAttack on the first 1,000, at eps 0.05, 0.1 and 0.2).
    """

    dataset: str = _field("digits", "data set", choices=dataset_names)
    data_home: str = _field(None, "folder holding MNIST/raw or FashionMNIST/raw (default: $ROBUSTKD_DATA, else "
                                  "~/robustkd_data)")
    download: bool = _field(False, "download MNIST/Fashion-MNIST if missing")
    out: str = _field("robustkd_out", "output folder; finished models are saved in OUT/models and reused by the "
                                      "next run with the same settings")
    epochs: int = _field(None, "training epochs of every model")
    attacks: tuple = _field(None, "one adversarially trained teacher per attack; attack:eps gives it its own "
                                  "budget (an L2 radius for an L2 attack)", "names")
    train_eps: float = _field(None, "budget of the teachers' training attacks")
    eval_attacks: tuple = _field(None, "attacks of the evaluation besides AutoAttack", "names")
    autoattack: bool = _field(True, "evaluate with AutoAttack (standard version) too, in the worst case")
    autoattack_n_test: int = _field(None, "run AutoAttack and the worst case on the first N test images only, the "
                                          "same for every model (0: all of them)")
    eps: tuple = _field(None, "evaluation budgets", "budgets")
    lr: float = _field(None, "learning rate of every model (Adam; the peak of a one-cycle schedule)")
    lr_schedule: str = _field(None, "learning-rate schedule", choices=lambda: ["constant", "onecycle"])
    student_attack: str = _field(None, "training attack of the adversarial student",
                                 choices=lambda: list(ATTACKS))
    valid_size: int = _field(None, "training images held out to keep each teacher's most robust epoch (PGD "
                                   "accuracy on them; 0: none)")
    scheme: str = _field("confidence", "weighting scheme of the adaptive student", choices=lambda: list(SCHEMES))
    gradient_matching: float = _field(GRADIENT_MATCHING, "weight of the input-gradient term of the *_gm students "
                                                         "(0: leave them out)")
    feature_matching: object = _field(FEATURE_MATCHING, "weight of the feature term of the mtkd_default student "
                                      "(auto: 10 for images at least 16 pixels a side, else 0)", kind="auto_or_float")
    temperature: float = _field(4.0, "distillation temperature")
    alpha: float = _field(0.9, "share of the distillation term")
    adversarial_student: bool = _field(True, "also train the ARD-style student")
    student_channels: tuple = _field(None, "channels of every student's two conv blocks (default: the teachers', "
                                           "32,64); a smaller student also gets a row of its own direct "
                                           "adversarial training", "ints")
    student_hidden: int = _field(None, "width of every student's hidden layer (default: the teachers', 128)")
    labeled: int = _field(None, "keep the labels of N training images (stratified by the seed) and mark the "
                                "others unlabeled: the standard model and the teachers train on the N, the "
                                "students on every image; adds mtkd_default_labeled (the N alone) and "
                                "mtkd_default_rst with robust self-training teachers (default: all labeled)")
    n_train: int = _field(None, "random subset of the training set (default: all of it)")
    n_test: int = _field(None, "random subset of the test set (default: all of it)")
    batch_size: int = _field(64, "training batch size")
    n_jobs: int = _field(None, "teachers trained in parallel (joblib; default: one at a time)")
    eval_jobs: int = _field(-1, "threads attacking the test images at once, one core each (-1: every core); "
                                "the results are the same as with one")
    device: str = _field("cpu", "torch device: cpu, cuda, cuda:<index> or auto (CUDA when available)")
    seed: int = _field(0, "seeds the split, the models and the attacks")

    def resolved(self):
        """A copy with every unset (None) field taken from the data set's protocol (:data:`PROTOCOLS`)."""
        protocol = PROTOCOLS.get(self.dataset, _QUICK)
        return dataclasses.replace(self, **{k: v for k, v in protocol.items() if getattr(self, k) is None})

    def check(self, label=str):
        """Raise a ValueError naming the first invalid field (``label(name)`` names it, e.g. as an option).

        Unset fields (None, the protocol's) are checked once :meth:`resolved` has filled them.

        Returns
        -------
        ExperimentConfig
            ``self``, when every field is valid.
        """
        for f in dataclasses.fields(self):
            value, name = getattr(self, f.name), label(f.name)
            if value is None:
                continue
            choices = f.metadata["choices"]
            if choices is not None and value not in choices():
                raise ValueError(f"{name} must be one of {list(choices())}; got {value!r}")
            if f.metadata["kind"] == "names":
                try:
                    names = [teacher_spec(a)[0] if f.name == "attacks" else a for a in value]
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
                unknown = [a for a in names if a not in ATTACKS]
                if not value or unknown:
                    raise ValueError(f"unknown attack(s) {unknown} in {name}; choose from {list(ATTACKS)}")
                if f.name == "eval_attacks" and set(value) & set(TRAINING_ONLY):
                    bad = sorted(set(value) & set(TRAINING_ONLY))
                    raise ValueError(f"{name} cannot hold training-only attacks {bad}: their perturbations leave "
                                     "the eps-ball by design")
            if f.metadata["kind"] == "budgets" and (not value or any(not 0 < e < float("inf") for e in value)):
                raise ValueError(f"{name} values must be finite and > 0; got {list(value)}")
        channels = self.student_channels
        if channels is not None and (len(channels) != 2 or any(
                isinstance(c, bool) or not isinstance(c, numbers.Integral) or c < 1 for c in channels)):
            raise ValueError(f"{label('student_channels')} must be two integers >= 1 (the channels of the two conv "
                             f"blocks); got {list(channels)}")
        smallest = {"student_hidden": 1, "epochs": 1, "n_train": 1, "labeled": 1, "n_test": 1, "batch_size": 1, "n_jobs": 1,
                    "autoattack_n_test": 0, "valid_size": 0}
        for key, low in smallest.items():
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low):
                raise ValueError(f"{label(key)} must be >= {low}; got {value}")
        if isinstance(self.eval_jobs, bool) or not isinstance(self.eval_jobs, numbers.Integral) or self.eval_jobs == 0:
            raise ValueError(f"{label('eval_jobs')} must be an integer >= 1 or <= -1 (-1: every core); got "
                             f"{self.eval_jobs!r}")
        if self.train_eps is not None and not 0 < self.train_eps < float("inf"):
            raise ValueError(f"{label('train_eps')} values must be finite and > 0; got [{self.train_eps}]")
        if self.lr is not None and not 0 < self.lr < float("inf"):
            raise ValueError(f"{label('lr')} must be finite and > 0; got {self.lr}")
        if not 0 <= self.gradient_matching < float("inf"):
            raise ValueError(f"{label('gradient_matching')} must be finite and >= 0; got {self.gradient_matching}")
        fm = self.feature_matching
        if fm != "auto" and (isinstance(fm, (bool, str)) or not isinstance(fm, numbers.Real) or not 0 <= fm < float("inf")):
            raise ValueError(f"{label('feature_matching')} must be 'auto' or a finite number >= 0; got {fm!r}")
        if not self.temperature > 0:
            raise ValueError(f"{label('temperature')} must be > 0; got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"{label('alpha')} must be in [0, 1]; got {self.alpha}")
        return self
