"""scikit-learn's estimator checks, with the failures we expect and why.

The checks feed small tabular data of varying widths, so the module here is a lazy MLP; the
data range is opened with clip_min/clip_max because the checks use unbounded features.
"""
from sklearn.utils.estimator_checks import parametrize_with_checks
from torch import nn

import torch

from robustkd import AdaptiveWeighter, AdversarialTeacher, MultiTeacherDistiller, TeacherPool


class TabularNet(nn.Module):
    """An MLP whose input width is set by the first batch."""

    def __init__(self, n_classes=3):
        super().__init__()
        self.net = nn.Sequential(nn.LazyLinear(16), nn.ReLU(), nn.Linear(16, n_classes))

    def forward(self, X):
        return self.net(X.flatten(1))


SKORCH = "skorch's design, shared by every skorch net"
EXPECTED_FAILURES = {
    # skorch sets history_/initialized_/virtual params in __init__ and has its own set_params
    "check_no_attributes_set_in_init": SKORCH,
    "check_set_params": SKORCH + " (set_params routes prefixed parameters itself)",
    # skorch nets do not record n_features_in_: input shapes belong to the module
    "check_n_features_in": SKORCH,
    "check_n_features_in_after_fitting": SKORCH,
    # integer labels are indices into the module's logits (as skorch trains on them; other labels, e.g. strings,
    # are encoded), and the module has a fixed number of outputs
    "check_classifiers_classes": "integer labels are indices into the logits: -1 (binary {-1, 1}) is refused as "
                                 "'outside the model's classes 0..2'",
    "check_classifiers_train": "lists are not converted: skorch's to_tensor refuses them ('Cannot convert this data "
                               "type to a numpy array')",
    "check_dtype_object": "object arrays are not image tensors",
    "check_classifiers_one_label": "the module has a fixed number of outputs; one-class y is not special-cased",
    # our own, clear messages differ from the wording these checks look for
    "check_complex_data": "rejected with 'y must hold integer class indices', not sklearn's wording",
    "check_classifiers_regression_target": "rejected with 'y must hold integer class indices'",
    "check_estimators_empty_data_messages": "rejected with 'X is empty (0 samples)' after skorch's own check",
    "check_requires_y_none": "skorch's message for y=None differs from sklearn's wording",
    "check_supervised_y_2d": "2-D y is an error ('y must be one-dimensional'), not a warning",
    # input formats the image models do not take
    "check_estimator_sparse_tag": "sparse input is not supported by torch image modules",
    "check_estimator_sparse_array": "sparse input is not supported by torch image modules",
    "check_estimator_sparse_matrix": "sparse input is not supported by torch image modules",
    "check_classifier_data_not_an_array": "only numpy arrays and tensors are converted, not array-likes",
    "check_fit2d_predict1d": "1-D X at predict time fails inside the module",
}


class FixedWidthTeacher(nn.Module):
    """A frozen-at-init teacher for inputs of exactly ``width`` features and 3 classes."""

    def __init__(self, width=2, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.width = width
        self.net = nn.Linear(width, 3)

    def forward(self, X):
        return self.net(X.flatten(1))


WIDTH = "the teachers are given and take exactly 2 features; this check's data has another width"
DISTILLER_FAILURES = {
    **EXPECTED_FAILURES,
    **{name: WIDTH for name in (
        "check_fit_score_takes_y", "check_dont_overwrite_parameters", "check_n_features_in_after_fitting",
        "check_estimators_dtypes", "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimators_pickle",
        "check_f_contiguous_array_estimator", "check_supervised_y_2d", "check_methods_sample_order_invariance",
        "check_methods_subset_invariance", "check_dict_unchanged", "check_dtype_object", "check_complex_data",
        "check_classifiers_one_label_sample_weights", "check_fit2d_1sample", "check_fit2d_1feature",
        "check_positive_only_tag_during_fit")},
    "check_estimators_overwrite_params": "it compares joblib hashes of a deep copy of the parameters, and torch "
                                         "modules (the teachers) hash differently when copied; fit does not touch "
                                         "them (tests/test_distiller.py checks it)",
}
WEIGHTER_FAILURES = {
    # AdaptiveWeighter learns nothing: fit accepts anything and stores nothing
    "check_estimators_nan_inf": "fit is stateless and does not look at its input",
    "check_estimators_empty_data_messages": "fit is stateless and does not look at its input",
    "check_complex_data": "fit is stateless and does not look at its input",
    "check_dtype_object": "fit is stateless and does not look at its input",
    "check_fit1d": "fit is stateless and does not look at its input",
    "check_n_features_in": "fit is stateless: no n_features_in_",
    "check_requires_y_none": "fit is stateless and does not look at its input",
    "check_fit_check_is_fitted": "nothing to fit: a new weighter is ready to use",
    "check_n_features_in_after_fitting": "fit is stateless: no n_features_in_",
    "check_estimator_sparse_tag": "fit is stateless and accepts sparse input without saying so in its tags",
}
POOL_FAILURES = {k: v for k, v in EXPECTED_FAILURES.items()  # a plain scikit-learn estimator around skorch nets
                 if k not in ("check_no_attributes_set_in_init", "check_set_params")}


def expected_failures(estimator):
    if isinstance(estimator, MultiTeacherDistiller):
        return DISTILLER_FAILURES
    if isinstance(estimator, AdaptiveWeighter):
        return WEIGHTER_FAILURES
    if isinstance(estimator, TeacherPool):
        return POOL_FAILURES
    return EXPECTED_FAILURES


@parametrize_with_checks([
    AdversarialTeacher(TabularNet, attack=None, max_epochs=2, train_split=None, verbose=0, clip_min=-1e6,
                       clip_max=1e6, random_state=0),
    AdversarialTeacher(TabularNet, attack="fgsm", eps=0.1, max_epochs=2, train_split=None, verbose=0,
                       clip_min=-1e6, clip_max=1e6, random_state=0),
    MultiTeacherDistiller([FixedWidthTeacher(seed=0), FixedWidthTeacher(seed=1)], alpha=0.0, max_epochs=30,
                          lr=0.05, train_split=None, verbose=0, clip_min=-1e6, clip_max=1e6, random_state=0),
    TeacherPool(AdversarialTeacher(TabularNet, attack="fgsm", eps=0.1, max_epochs=2, train_split=None, verbose=0,
                                   clip_min=-1e6, clip_max=1e6), attacks=["fgsm"], random_state=0),
    AdaptiveWeighter(),
], expected_failed_checks=expected_failures)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
