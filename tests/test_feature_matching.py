"""Feature matching: the student's intermediate features, through per-teacher adapters, pulled towards the
teachers' features on the same clean inputs (MultiTeacherDistiller(feature_matching=...))."""
import io

import joblib
import numpy as np
import pytest
import torch
from torch import nn

from robustkd.losses import feature_matching_loss


def test_feature_matching_loss_is_the_weighted_relative_squared_error():
    gen = torch.Generator().manual_seed(0)
    t = [torch.randn(3, 2, 4, 4, generator=gen), torch.randn(3, 2, 4, 4, generator=gen)]
    a = [torch.randn(3, 2, 4, 4, generator=gen), torch.randn(3, 2, 4, 4, generator=gen)]
    w = torch.tensor([[0.2, 0.8], [1.0, 0.0], [0.5, 0.5]])
    expected = np.mean([sum(float(w[i, k]) * float(((a[k][i] - t[k][i]) ** 2).sum() / (t[k][i] ** 2).sum())
                            for k in range(2)) for i in range(3)])
    assert float(feature_matching_loss(a, t, w)) == pytest.approx(expected, rel=1e-5)
    assert float(feature_matching_loss(t, t, w)) == 0.0                       # matched features cost nothing
    assert float(feature_matching_loss([torch.zeros_like(x) for x in t], t, w)) == pytest.approx(1.0)
    per_teacher = feature_matching_loss(a, t, torch.tensor([0.2, 0.8]))       # (K,) weights apply to every input
    assert float(per_teacher) == pytest.approx(float(feature_matching_loss(a, t, torch.tensor([[0.2, 0.8]] * 3))))
    a0 = a[0].clone().requires_grad_(True)
    feature_matching_loss([a0, a[1]], t, w).backward()
    assert a0.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"adapted features \(3, 2, 4, 4\) do not match teacher features"):
        feature_matching_loss([a[0], a[1]], [t[0], t[1][:, :1]], w)
    with pytest.raises(ValueError, match="one tensor per teacher; got 2 and 1"):
        feature_matching_loss(a, t[:1], w)
    with pytest.raises(ValueError, match=r"weights must have shape \(n, K\)=\(3, 2\) or \(K,\); got \(3, 3\)"):
        feature_matching_loss(a, t, torch.ones(3, 3) / 3)


def _distiller(teachers, cls=None, **kwargs):
    from robustkd import MultiTeacherDistiller
    params = dict(max_epochs=2, batch_size=64, train_split=None, verbose=0, random_state=0)
    params.update(kwargs)
    return (cls or MultiTeacherDistiller)(teachers, **params)


def test_a_zero_weight_builds_nothing_and_trains_the_same_student(teacher_pool, digits):
    from robustkd import MultiTeacherDistiller

    class NoFeatureTerm(MultiTeacherDistiller):
        def feature_matching_term(self, *args, **kwargs):
            raise AssertionError("the feature term was computed")

    X_train, _, y_train, _ = digits
    X, y = X_train[:300], y_train[:300]
    zero = _distiller(teacher_pool, NoFeatureTerm, feature_matching=0.0).fit(X, y)
    assert len(zero.feature_adapters_) == 0 and "feature_err" not in zero.history[-1]["batches"][0]
    other = _distiller(teacher_pool, feature_matching=0, feature_layers=["features.2"]).fit(X, y)
    assert all(torch.equal(p, q) for p, q in zip(zero.module_.parameters(), other.module_.parameters()))
    some = _distiller(teacher_pool, feature_matching=5.0).fit(X, y)
    assert not all(torch.equal(p, q) for p, q in zip(zero.module_.parameters(), some.module_.parameters()))
    assert "feature_err" in some.history[-1]["batches"][0]


def test_auto_weight_follows_the_image_size():
    from robustkd.distillation import AUTO_FEATURE_MATCHING, resolve_feature_matching

    assert resolve_feature_matching("auto", (1, 28, 28)) == AUTO_FEATURE_MATCHING == 10.0
    assert resolve_feature_matching("auto", (3, 16, 16)) == 10.0
    assert resolve_feature_matching("auto", (1, 15, 28)) == 0.0      # both sides must reach 16 pixels
    assert resolve_feature_matching("auto", (1, 8, 8)) == 0.0
    assert resolve_feature_matching("auto", (64,)) == 0.0            # not an image
    assert resolve_feature_matching(2.5, (1, 8, 8)) == 2.5          # a number is used as given
    with pytest.raises(ValueError, match=r"feature_matching must be a finite number >= 0 or one of \['auto'\]; "
                                         r"got feature_matching='on'"):
        resolve_feature_matching("on", (1, 28, 28))


def test_auto_is_off_on_small_images_and_on_for_large_ones(teacher_pool, digits):
    from robustkd import MultiTeacherDistiller

    X_train, _, y_train, _ = digits
    X, y = X_train[:300], y_train[:300]
    auto = _distiller(teacher_pool, feature_matching="auto").fit(X, y)           # 8x8 digits: no feature term
    zero = _distiller(teacher_pool, feature_matching=0.0).fit(X, y)
    assert auto.feature_matching == "auto" and auto.feature_matching_ == 0.0 and len(auto.feature_adapters_) == 0
    assert all(torch.equal(p, q) for p, q in zip(auto.module_.parameters(), zero.module_.parameters()))
    assert MultiTeacherDistiller(teacher_pool).feature_matching == "auto"           # the default
    # 16x16 (the digits upsampled): the rule's weight, the same student as asking for it explicitly
    from conftest import make_teacher
    big = np.repeat(np.repeat(X[:128], 2, axis=2), 2, axis=3)
    teacher = make_teacher(module__input_shape=(1, 16, 16), max_epochs=1).fit(big, y[:128])
    large = _distiller([teacher], feature_matching="auto", max_epochs=1).fit(big, y[:128])
    explicit = _distiller([teacher], feature_matching=10.0, max_epochs=1).fit(big, y[:128])
    assert large.feature_matching_ == 10.0 and "feature_err" in large.history[-1]["batches"][0]
    assert all(torch.equal(p, q) for p, q in zip(large.module_.parameters(), explicit.module_.parameters()))
    large.set_params(feature_matching=0.0).partial_fit(big, y[:128])              # the weight follows set_params
    assert large.feature_matching_ == 0.0 and "feature_err" not in large.history[-1]["batches"][0]


def _features(module, x, layers):
    named, out = dict(module.named_modules()), {}
    handles = [named[n].register_forward_hook(lambda m, i, o, n=n: out.__setitem__(n, o.detach())) for n in layers]
    with torch.no_grad():
        module.eval()(x)
    for h in handles:
        h.remove()
    return out


def test_the_term_is_the_loss_of_the_students_adapted_features_against_each_teachers(teacher_pool, digits):
    X_train, _, y_train, _ = digits
    d = _distiller(teacher_pool, feature_matching=3.0, weighter="uniform", max_epochs=1).fit(X_train[:200],
                                                                                              y_train[:200])
    assert d.feature_layers_ == ["features.2", "features.5"]      # "auto": the SmallCNN's two pooling layers
    adapters = d.feature_adapters_
    assert [type(m).__name__ for m in adapters["features/2"]] == ["Conv2d"] * 3
    assert adapters["features/5"][0].weight.shape == (64, 64, 1, 1)
    x = torch.as_tensor(X_train[:16])
    student = _features(d.module_, x, d.feature_layers_)
    adapters.requires_grad_(False)
    teachers = [_features(t, x, d.feature_layers_) for t in d.teachers_]
    expected = sum(np.mean([sum(float(((adapters[n.replace(".", "/")][k](student[n][i:i + 1]) - teachers[k][n][i:i + 1])
                                       ** 2).sum() / (teachers[k][n][i] ** 2).sum()) / 3 for k in range(3))
                            for i in range(16)]) for n in d.feature_layers_)
    d.module_.eval()
    with torch.no_grad(), d._capturing_features():
        d.infer(x)
        term = d.feature_matching_term(x, torch.full((16, 3), 1 / 3))
    assert float(term) == pytest.approx(expected, rel=1e-4)
    assert d.feature_matching_term(x, torch.full((16, 3), 1 / 3)) is None     # outside a step: nothing recorded


def test_the_validation_loss_carries_the_term_too(teacher_pool, digits):
    from skorch.dataset import ValidSplit

    X_train, _, y_train, _ = digits
    d = _distiller(teacher_pool, feature_matching=3.0, gradient_matching=0.0, weighter="uniform", max_epochs=1,
                   train_split=ValidSplit(4, stratified=True)).fit(X_train[:200], y_train[:200])
    assert np.isfinite(d.history[-1, "valid_loss"])
    x, y = torch.as_tensor(X_train[200:232]), torch.as_tensor(y_train[200:232])
    d.module_.eval()
    with torch.no_grad():
        plain = float(d.get_loss(d.infer(x), y, X=x))      # outside a step: no feature term
    student = _features(d.module_, x, d.feature_layers_)
    teachers = [_features(t, x, d.feature_layers_) for t in d.teachers_]
    with torch.no_grad():
        term = sum(feature_matching_loss([a(student[n]) for a in d.feature_adapters_[n.replace(".", "/")]],
                                         [t[n] for t in teachers], torch.full((32, 3), 1 / 3))
                   for n in d.feature_layers_)
    assert float(term) > 0
    assert float(d.validation_step((x, y))["loss"]) == pytest.approx(plain + 3.0 * float(term), rel=1e-4)


def test_feature_matching_brings_the_students_features_to_the_teachers(teacher_pool, digits):
    X_train, X_test, y_train, _ = digits
    d = _distiller(teacher_pool, feature_matching=10.0, max_epochs=8).fit(X_train, y_train)
    err = [np.mean([b["feature_err"] for b in row["batches"]]) for row in d.history]
    assert err[-1] < 0.6 * err[0], err
    # and on inputs it never trained on: the term (its adapters included) against the untrained student's
    untrained = _distiller(teacher_pool, feature_matching=10.0, max_epochs=0).fit(X_train, y_train)
    x, w = torch.as_tensor(X_test), torch.full((len(X_test), 3), 1 / 3)

    def term(net):
        net.module_.eval()
        with torch.no_grad(), net._capturing_features():
            net.infer(x)
            return float(net.feature_matching_term(x, w))
    assert term(d) < 0.6 * term(untrained)
    # no hook is left on the student or the teachers after fitting
    assert not any(m._forward_hooks for m in list(d.module_.modules()) + list(d.teachers_.modules()))
    # the term trains the student itself, not only the adapters
    d.module_.train()
    with d._capturing_features():
        d.infer(x)
        d.feature_matching_term(x, w).backward()
    assert d.module_.features[0].weight.grad.abs().sum() > 0


def test_an_adversarial_student_matches_features_of_its_clean_inputs(teacher_pool, digits):
    X_train, _, y_train, _ = digits
    seen = []

    from robustkd import MultiTeacherDistiller

    class Recorder(MultiTeacherDistiller):
        def feature_matching_term(self, X, weights, training=False):
            if training and self._student_features:
                x = torch.as_tensor(X["X"] if isinstance(X, dict) else X).detach()
                clean = _features(self.module_, x, ["features.5"])["features.5"]
                self.module_.train()
                seen.append(torch.allclose(self._student_features["features.5"].detach(), clean, atol=1e-5))
            return super().feature_matching_term(X, weights, training)

    _distiller(teacher_pool, Recorder, feature_matching=1.0, student_inputs="adversarial", student_attack="fgsm",
               student_eps=0.2,
               max_epochs=1).fit(X_train[:128], y_train[:128])
    assert seen and all(seen)


def test_fitted_students_persist_refit_alike_and_keep_their_adapters_on_partial_fit(teacher_pool, digits):
    from sklearn.base import clone
    X_train, X_test, y_train, _ = digits
    d = _distiller(teacher_pool, feature_matching=2.0, feature_layers=["features.5"]).fit(X_train[:200], y_train[:200])
    buf = io.BytesIO()
    joblib.dump(d, buf)
    buf.seek(0)
    loaded = joblib.load(buf)
    np.testing.assert_array_equal(loaded.predict_proba(X_test), d.predict_proba(X_test))
    assert loaded.feature_layers_ == ["features.5"] and len(loaded.feature_adapters_) == 1
    again = clone(d).fit(X_train[:200], y_train[:200])         # a refit rebuilds the adapters: the same student
    np.testing.assert_array_equal(again.predict_proba(X_test), d.predict_proba(X_test))
    adapters = d.feature_adapters_
    d.partial_fit(X_train[:200], y_train[:200])
    assert d.feature_adapters_ is adapters
    assert {id(p) for p in adapters.parameters()} <= {id(p) for g in d.optimizer_.param_groups for p in g["params"]}
    d.set_params(feature_layers=["features.2"]).partial_fit(X_train[:200], y_train[:200])   # new layers: rebuilt
    assert d.feature_layers_ == ["features.2"] and list(d.feature_adapters_) == ["features/2"]
    in_optimizer = {id(p) for g in d.optimizer_.param_groups for p in g["params"]}
    assert {id(p) for p in d.feature_adapters_.parameters()} <= in_optimizer
    assert not {id(p) for p in adapters.parameters()} & in_optimizer


@pytest.mark.parametrize("params, message", [
    (dict(feature_matching=-1), "feature_matching must be a finite number >= 0 or one of \\['auto'\\]; got feature_matching=-1"),
    (dict(feature_matching=True), "feature_matching must be a finite number >= 0 or one of \\['auto'\\]; got feature_matching=True"),
    (dict(feature_matching=1, feature_layers=["features.9"]),
     r"feature_layers names \['features.9'\], which are not layers of the student; its layers: \['features', "),
    (dict(feature_matching=1, feature_layers="features.2"),
     "feature_layers must be 'auto', a non-empty list of layer names or a mapping {student_layer: teacher_layer}; "
     "got feature_layers='features.2'"),
    (dict(feature_matching=1, feature_layers={"features.2": 5}),
     r"feature_layers as a mapping must pair student layer names with teacher layer names \(str: str\), at least "
     r"one pair; got feature_layers=\{'features.2': 5\}"),
    (dict(feature_matching=1, feature_layers={"features.2": "features.9"}),
     r"feature_layers names \['features.9'\], which are not layers of teacher 0; its layers: \['features', "),
    (dict(feature_matching=1, feature_layers={"features.2": "features.5"}),
     r"feature_layers: student layer 'features.2' gives features of shape \(32, 4, 4\) and layer 'features.5' of "
     r"teacher 0 \(64, 2, 2\); matching needs the same spatial shape"),
])
def test_bad_feature_matching_settings_are_refused_with_the_parameter_named(teacher_pool, digits, params, message):
    X_train, _, y_train, _ = digits
    with pytest.raises(ValueError, match=message):
        _distiller(teacher_pool, **params).fit(X_train[:64], y_train[:64])


def test_auto_layers_warn_and_fall_back_where_explicit_layers_are_refused(teacher_pool, digits):
    X_train, X_test, y_train, _ = digits
    X, y = X_train[:128], y_train[:128]

    def flat():
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    with pytest.warns(UserWarning, match="feature_layers='auto' matches no layer .feature matching is off.; left "
                                         "out: the student has no pooling layer"):
        auto = _distiller(teacher_pool, module=flat(), feature_matching=1, weighter="uniform").fit(X, y)
    assert auto.feature_layers_ == [] and "feature_err" not in auto.history[-1]["batches"][0]
    off = _distiller(teacher_pool, module=flat(), feature_matching=0, weighter="uniform").fit(X, y)  # same weights
    np.testing.assert_allclose(auto.predict_proba(X_test), off.predict_proba(X_test), atol=1e-6)
    with pytest.raises(ValueError, match=r"feature_layers names \['1'\], which are not layers of teacher 0; pair the "
                                         r"student's layers with the teachers' by name: feature_layers=\{"):
        _distiller(teacher_pool, module=flat(), feature_matching=1, feature_layers=["1"]).fit(X, y)


def test_a_layer_that_gives_no_tensor_is_left_out_by_auto_and_refused_by_name(teacher_pool, digits):
    X_train, _, y_train, _ = digits
    X, y = X_train[:128], y_train[:128]

    class FirstBlockOnly(nn.Module):
        """The SmallCNN's layer names, but its second conv block (ending at ``features.5``) is never run."""

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.features = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                          nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 10))

        def forward(self, x):
            return self.head(self.features[:3](x))

    with pytest.warns(UserWarning, match=r"matches \['features.2'\]; left out: \{'features.5': 'no tensor output "
                                         r"in the student'\}"):
        auto = _distiller(teacher_pool, module=FirstBlockOnly(), feature_matching=1, max_epochs=1).fit(X, y)
    assert auto.feature_layers_ == ["features.2"] and list(auto.feature_adapters_) == ["features/2"]
    assert "feature_err" in auto.history[-1]["batches"][0]
    with pytest.raises(ValueError, match=r"feature_layers names \['features.5'\], which give no tensor in a "
                                         "forward pass of the student"):
        _distiller(teacher_pool, module=FirstBlockOnly(), feature_matching=1,
                   feature_layers=["features.2", "features.5"]).fit(X, y)


class ThreeStages(nn.Module):
    """A student of another depth and other layer names than the SmallCNN teachers: three pooling stages
    (4x4, 2x2, 1x1 on 8x8 digits), the first two preceded by two convolutions each."""

    def __init__(self, width=8):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                                  nn.ReLU())
        self.pool_a = nn.MaxPool2d(2)
        self.mid = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU())
        self.pool_b = nn.MaxPool2d(2)
        self.pool_c = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2 * width, 10)

    def forward(self, x):
        return self.head(self.pool_c(self.pool_b(self.mid(self.pool_a(self.stem(x))))).flatten(1))


def test_a_student_of_another_width_and_depth_is_paired_with_the_teachers_by_role(teacher_pool, digits):
    from robustkd import SmallCNN

    X_train, X_test, y_train, _ = digits
    X, y = X_train[:256], y_train[:256]
    with pytest.warns(UserWarning, match=r"matches \['pool_a', 'pool_b'\]; left out: \{'pool_c': 'no pooling layer of "
                                         r"teacher 0 gives features of spatial size 1x1'\}"):
        d = _distiller(teacher_pool, module=ThreeStages(), feature_matching=3.0, weighter="uniform").fit(X, y)
    assert d.feature_pairs_ == {"pool_a": ["features.2"] * 3, "pool_b": ["features.5"] * 3}
    assert d.feature_adapters_["pool_a"][0].weight.shape == (32, 8, 1, 1)     # student width -> teacher width
    assert d.feature_adapters_["pool_b"][2].weight.shape == (64, 16, 1, 1)
    # the term is the loss of the student's layers against their partners, not against same-named layers
    x, w = torch.as_tensor(X_test[:16]), torch.full((16, 3), 1 / 3)
    student = _features(d.module_, x, ["pool_a", "pool_b"])
    teachers = [_features(t, x, ["features.2", "features.5"]) for t in d.teachers_]
    with torch.no_grad():
        expected = sum(float(feature_matching_loss([a(student[s]) for a in d.feature_adapters_[s]],
                                                   [t[partner] for t in teachers], w))
                       for s, partner in (("pool_a", "features.2"), ("pool_b", "features.5")))
        d.module_.eval()
        with d._capturing_features():
            d.infer(x)
            assert float(d.feature_matching_term(x, w)) == pytest.approx(expected, rel=1e-4)
    # a small SmallCNN keeps the teachers' layer names: each layer with its namesake, through narrower adapters
    small = _distiller(teacher_pool, module=SmallCNN(input_shape=(1, 8, 8), channels=(8, 16), hidden=32),
                       feature_matching=3.0, gradient_matching=1.0, max_epochs=1).fit(X, y)
    assert small.feature_pairs_ == {"features.2": ["features.2"] * 3, "features.5": ["features.5"] * 3}
    assert small.feature_adapters_["features/5"][0].weight.shape == (64, 16, 1, 1)
    assert {"feature_err", "grad_cos"} <= set(small.history[-1]["batches"][0])


def test_an_explicit_mapping_pairs_the_layers_it_names_and_survives_persistence(teacher_pool, digits):
    from sklearn.base import clone
    X_train, X_test, y_train, _ = digits
    X, y = X_train[:200], y_train[:200]
    mapping = {"pool_b": "features.5", "stem.3": "features.1"}    # any layers of matching spatial size
    d = _distiller(teacher_pool, module=ThreeStages(), feature_matching=2.0, feature_layers=mapping).fit(X, y)
    assert d.feature_layers_ == ["pool_b", "stem.3"]               # in the mapping's order
    assert d.feature_pairs_ == {"stem.3": ["features.1"] * 3, "pool_b": ["features.5"] * 3}
    assert d.feature_adapters_["stem/3"][1].weight.shape == (32, 8, 1, 1)
    loaded = joblib.load(_dumped(d))
    assert loaded.feature_pairs_ == d.feature_pairs_
    np.testing.assert_array_equal(loaded.predict_proba(X_test), d.predict_proba(X_test))
    loaded.partial_fit(X, y)                                       # resumes with the same pairs and adapters
    assert loaded.feature_pairs_ == d.feature_pairs_ and "feature_err" in loaded.history[-1]["batches"][0]
    assert clone(d).get_params()["feature_layers"] == mapping
    with pytest.raises(ValueError, match=r"feature_layers: student layer 'pool_a' gives features of shape \(8, 4, 4\) "
                                         r"and layer 'features.5' of teacher 0 \(64, 2, 2\); matching needs the "
                                         r"same spatial shape"):
        _distiller(teacher_pool, module=ThreeStages(), feature_matching=1.0,
                   feature_layers={"pool_a": "features.5"}).fit(X, y)
    with pytest.raises(ValueError, match=r"feature_layers names \['pool_b'\], which are not layers of teacher 0"):
        _distiller(teacher_pool, module=ThreeStages(), feature_matching=1.0, feature_layers=["pool_b"]).fit(X, y)


def _dumped(obj):
    buf = io.BytesIO()
    joblib.dump(obj, buf)
    buf.seek(0)
    return buf


def test_cached_teacher_features_train_the_student_the_uncached_way_without_running_the_teachers(teacher_pool,
                                                                                                  digits):
    from robustkd import MultiTeacherDistiller

    X_train, X_test, y_train, _ = digits
    X, y = X_train[:256], y_train[:256]
    runs = []

    class Counting(MultiTeacherDistiller):
        def train_step_single(self, batch, **fit_params):
            runs.append(0)
            handles = [t.register_forward_hook(lambda *a: runs.__setitem__(-1, runs[-1] + 1)) for t in self.teachers_]
            try:
                return super().train_step_single(batch, **fit_params)
            finally:
                for h in handles:
                    h.remove()

    cached = _distiller(teacher_pool, Counting, feature_matching=5.0, gradient_matching=1.0).fit(X, y)
    assert runs and not any(runs)                       # the teachers never ran in a training step
    runs.clear()
    uncached = _distiller(teacher_pool, Counting, feature_matching=5.0, gradient_matching=1.0,
                          cache_teacher_features=False).fit(X, y)
    assert runs and all(r == 3 for r in runs)           # each teacher once per step
    errs = [[b["feature_err"] for row in d.history for b in row["batches"]] for d in (cached, uncached)]
    np.testing.assert_allclose(errs[0], errs[1], rtol=2e-3)         # float16 targets: the same terms, rounded
    np.testing.assert_allclose(cached.predict_proba(X_test), uncached.predict_proba(X_test), atol=2e-3)
    item = cached.get_split_datasets(X, y)[0][5][0]
    assert item["teacher_features"]["features.5|2"].dtype == torch.float16
    assert "teacher_features" not in cached.set_params(cache_teacher_features=False).get_split_datasets(X, y)[0][5][0]
