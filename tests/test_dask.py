"""Scale-out on a real Dask cluster: TeacherPool and GridSearchCV go through joblib, so
``joblib.parallel_config(backend="dask")`` runs their fits on the cluster's worker processes, with the
weights and scores of a serial fit."""
import contextlib

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from robustkd import AdversarialTeacher, SmallCNN, TeacherPool, make_robust_scorer

distributed = pytest.importorskip("distributed", reason="the test extra installs dask[distributed]")
Client, LocalCluster, get_task_stream = distributed.Client, distributed.LocalCluster, distributed.get_task_stream


@contextlib.contextmanager
def torch_threads(n):
    """Run the serial reference with one torch thread, as each single-threaded worker does: float sums in
    the same order, so the weights agree bit for bit."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _set_threads():
    torch.set_num_threads(1)
    return torch.get_num_threads()


def test_a_pool_and_a_grid_search_fit_on_a_dask_cluster_with_the_serial_weights(digits):
    X_train, X_test, y_train, y_test = digits
    X, y = X_train[:300], y_train[:300]
    template = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), eps=0.2, max_epochs=2, train_split=None,
                                  verbose=0)
    pool = TeacherPool(template, attacks=["fgsm", "pgd"], n_jobs=2, random_state=0)
    grid = GridSearchCV(clone(template).set_params(attack="fgsm", random_state=0), {"eps": [0.1, 0.2]}, cv=2,
                        scoring=make_robust_scorer("fgsm", eps=0.1), n_jobs=2)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        assert set(client.run(_set_threads).values()) == {1}
        # the main process refits GridSearchCV's best candidate: one torch thread there too
        with get_task_stream(client) as tasks, joblib.parallel_config(backend="dask"), torch_threads(1):
            on_dask = clone(pool).fit(X, y)
            searched = clone(grid).fit(X, y)
        workers = {task["worker"] for task in tasks.data}
        # joblib's dask backend batches calls into tasks; every task ran on one of the cluster's workers
        assert len(tasks.data) >= 2 and workers and workers <= set(client.scheduler_info()["workers"]), \
            "the fits ran as tasks on the cluster's worker processes"
    with torch_threads(1):
        serial = clone(pool).set_params(n_jobs=1).fit(X, y)
        serial_search = clone(grid).set_params(n_jobs=1).fit(X, y)
    assert [t.attack for t in on_dask.teachers_] == ["fgsm", "pgd"]
    for a, b in zip(on_dask.teachers_, serial.teachers_):
        assert all(torch.equal(p, q) for p, q in zip(a.module_.parameters(), b.module_.parameters()))
    assert np.array_equal(searched.cv_results_["mean_test_score"], serial_search.cv_results_["mean_test_score"])
    assert searched.best_params_ == serial_search.best_params_
    with torch_threads(1):
        assert np.array_equal(searched.predict(X_test), serial_search.predict(X_test))
