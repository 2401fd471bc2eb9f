"""Extending robustkd from user code: a new weighting scheme, attack and dataset, each used by name."""
import numpy as np
import pytest
import torch

from robustkd import (AdversarialTeacher, MultiTeacherDistiller, SmallCNN, available_attacks, load_split,
                      register_attack, register_dataset, register_scheme, robust_mask, robust_score)
from robustkd.attacks import _registry as attack_registry
from robustkd.datasets import _registry as dataset_registry
from robustkd import _scheme_registry as scheme_registry
from robustkd import weighting


@pytest.fixture(autouse=True)
def isolated_registries(monkeypatch):
    """Each test registers into copies of the registries, so nothing leaks into other tests."""
    monkeypatch.setattr(attack_registry, "_ATTACKS", dict(attack_registry._ATTACKS))
    schemes = dict(weighting._SCHEMES)       # the registry lives in robustkd._scheme_registry, read by weighting
    monkeypatch.setattr(weighting, "_SCHEMES", schemes)
    monkeypatch.setattr(scheme_registry, "_SCHEMES", schemes)
    monkeypatch.setattr(dataset_registry, "DATASETS", dict(dataset_registry.DATASETS))


def test_a_new_weighting_scheme_is_used_by_name(digits):
    X_train, _, y_train, _ = digits
    register_scheme("last_teacher", lambda z, y, tau: torch.nn.functional.one_hot(
        torch.full((len(z),), z.shape[1] - 1), z.shape[1]).float(), needs_labels=False)
    teachers = [AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), attack=a, max_epochs=1,
                                   train_split=None, verbose=0, random_state=0).fit(X_train[:64], y_train[:64])
                for a in ("fgsm", "pgd")]
    student = MultiTeacherDistiller(teachers, weighter__scheme="last_teacher", max_epochs=1, train_split=None,
                                    verbose=0, random_state=0).fit(X_train[:64], y_train[:64])
    assert student.mean_teacher_weights().tolist() == [[0.0, 1.0]]
    assert "last_teacher" in weighting.available_schemes()
    with pytest.raises(ValueError, match="already registered"):
        register_scheme("last_teacher", lambda z, y, tau: z[:, :, 0], needs_labels=False)
    register_scheme("negative", lambda z, y, tau: -torch.ones(z.shape[:2]), needs_labels=False)
    with pytest.raises(ValueError, match=r"scheme 'negative' must return finite non-negative weights"):
        weighting.teacher_weights(torch.zeros(3, 2, 4), scheme="negative")


class SignNoise:
    """A random-sign perturbation of size eps: a weak attack, enough to test the plumbing."""

    def __init__(self, predict, eps, clip_min, clip_max, seed):
        self.predict, self.eps, self.clip_min, self.clip_max, self.seed = predict, eps, clip_min, clip_max, seed

    def perturb(self, x, y=None):
        g = torch.Generator().manual_seed(self.seed)
        noise = torch.randint(0, 2, x.shape, generator=g).float() * 2 - 1
        return (x + self.eps * noise).clamp(self.clip_min, self.clip_max)

    def __repr__(self):
        return f"SignNoise(eps={self.eps}, seed={self.seed})"


def test_a_new_attack_is_used_by_name_in_scoring_lists_and_training(standard_net, digits):
    X_train, X_test, y_train, y_test = digits
    register_attack("sign_noise", lambda model, eps, lo, hi, params: SignNoise(model, eps, lo, hi, **params),
                    norm="linf", eps=0.1, defaults={"seed": 0}, description="random signs")
    assert available_attacks()["sign_noise"]["accepts"] == ["seed"]
    clean = robust_score(standard_net, X_test, y_test, eps=0)
    noisy = robust_score(standard_net, X_test, y_test, attack="sign_noise", eps=0.3)
    assert noisy < clean
    worst = robust_mask(standard_net, X_test, y_test, attack=["sign_noise", "pgd"], eps=0.1, random_state=0)
    assert not (worst & ~robust_mask(standard_net, X_test, y_test, attack="pgd", eps=0.1, random_state=0)).any()
    teacher = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), attack="sign_noise", eps=0.1,
                                 attack__seed=3, max_epochs=1, train_split=None, verbose=0).fit(X_train[:64], y_train[:64])
    assert repr(teacher.build_attack()) == "SignNoise(eps=0.1, seed=3)"
    with pytest.raises(TypeError, match=r"Attack 'sign_noise' got unexpected parameter\(s\) \['nb_iter'\]"):
        robust_score(standard_net, X_test, y_test, attack="sign_noise", nb_iter=3)
    with pytest.raises(ValueError, match='norm must be "linf" or "l2"'):
        register_attack("bad", lambda *a: None, norm="l1")


def test_a_new_dataset_is_loaded_by_name_from_arrays_or_torch_datasets():
    def arrays(data_home, download, seed):
        rng = np.random.RandomState(seed)
        X, y = rng.rand(50, 1, 4, 4).astype(np.float32), np.arange(50) % 3
        return X[:40], X[40:], y[:40], y[40:]

    def torch_datasets(data_home, download, seed):
        X_train, X_test, y_train, y_test = arrays(data_home, download, seed)
        return (torch.utils.data.TensorDataset(torch.from_numpy(X_train), torch.from_numpy(y_train)),
                torch.utils.data.TensorDataset(torch.from_numpy(X_test), torch.from_numpy(y_test)))

    register_dataset("blobs", arrays, n_classes=3)
    register_dataset("blobs_torch", torch_datasets, n_classes=3, description="the same, as torch datasets")
    a, b = load_split("blobs", n_train=30, seed=1), load_split("blobs_torch", n_train=30, seed=1)
    assert [x.shape for x in a] == [(30, 1, 4, 4), (10, 1, 4, 4), (30,), (10,)]
    assert all(np.array_equal(u, v) for u, v in zip(a, b)) and b[2].dtype == np.int64
    with pytest.raises(ValueError, match="n_classes must be an int >= 2"):
        register_dataset("one", arrays, n_classes=1)
