"""The data set registry: names that :func:`load_split` and the command line load."""
import dataclasses

import numpy as np

from .._names import check_new_name
from ._loaders import load_digits_images, load_fashion_mnist, load_mnist

__all__ = ["DATASETS", "DatasetSpec", "register_dataset", "dataset_names", "dataset_to_arrays", "load_split"]


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A named data set of :func:`load_split` and the command line.

    Parameters
    ----------
    name : str
        Registry name.
    load : callable
        ``load(data_home, download, seed) -> (X_train, X_test, y_train, y_test)``.
    n_classes : int
        Number of classes of the whole data set (subsamples may miss some).
    description : str
        One line for help texts.
    """

    name: str
    load: object
    n_classes: int
    description: str


def _digits_split(data_home, download, seed):
    from sklearn.model_selection import train_test_split

    X, y = load_digits_images()
    return train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)


def _torchvision_split(loader):
    def load(data_home, download, seed):
        X_train, y_train = loader(data_home, train=True, download=download)
        X_test, y_test = loader(data_home, train=False, download=download)
        return X_train, X_test, y_train, y_test

    return load


DATASETS = {}


def register_dataset(name, load, *, n_classes, description="", overwrite=False):
    """Add a data set that :func:`load_split` (and so ``robustkd evaluate``/``reproduce`` in Python) loads by name.

    Parameters
    ----------
    name : str
        Registry name.
    load : callable
        ``load(data_home, download, seed)`` returning ``(X_train, X_test, y_train, y_test)`` (images
        as float32 arrays ``(n, C, H, W)`` in [0, 1], integer labels) or two torch ``Dataset``
        objects ``(train, test)`` of ``(image tensor, label)`` pairs, e.g. torchvision's with
        ``transform=ToTensor()``, which :func:`load_split` converts with :func:`dataset_to_arrays`.
    n_classes : int
        Number of classes of the whole data set.
    description : str, default=""
        One line for listings.
    overwrite : bool, default=False
        Replace an existing data set of that name (otherwise an error).

    Returns
    -------
    DatasetSpec
        The registered entry.

    Examples
    --------
    >>> import numpy as np
    >>> from robustkd.datasets import load_split, register_dataset
    >>> def blobs(data_home, download, seed):
    ...     rng = np.random.RandomState(seed)
    ...     X, y = rng.rand(40, 1, 4, 4).astype(np.float32), np.arange(40) % 2
    ...     return X[:30], X[30:], y[:30], y[30:]
    >>> spec = register_dataset("blobs", blobs, n_classes=2, overwrite=True)
    >>> [a.shape[0] for a in load_split("blobs")]
    [30, 10, 30, 10]
    """
    check_new_name(DATASETS, "a dataset", name, overwrite)
    if not callable(load):
        raise TypeError(f"load must be callable load(data_home, download, seed); got {load!r}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes must be an int >= 2; got n_classes={n_classes!r}")
    DATASETS[name] = DatasetSpec(name, load, n_classes, description)
    return DATASETS[name]


def dataset_to_arrays(dataset, batch_size=1024):
    """``(X, y)`` float32/int64 arrays from a torch ``Dataset`` of ``(image tensor, label)`` pairs.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        E.g. a torchvision data set built with ``transform=torchvision.transforms.ToTensor()``.
    batch_size : int, default=1024
        Samples read at once.

    Returns
    -------
    X : ndarray of shape (n, C, H, W), float32
        The images.
    y : ndarray of shape (n,), int64
        The labels.
    """
    import torch

    xs, ys = [], []
    for xb, yb in torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False):
        xs.append(torch.as_tensor(xb, dtype=torch.float32).numpy())
        ys.append(torch.as_tensor(yb).numpy().astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys)


register_dataset("digits", _digits_split, n_classes=10,
                 description="scikit-learn's bundled 8x8 digits, split 75/25 (no download)")
register_dataset("mnist", _torchvision_split(load_mnist), n_classes=10,
                 description="MNIST 28x28, its own 60,000/10,000 split")
register_dataset("fashion-mnist", _torchvision_split(load_fashion_mnist), n_classes=10,
                 description="Fashion-MNIST 28x28, its own 60,000/10,000 split")


def dataset_names():
    """The names :func:`load_split` accepts.

    Returns
    -------
    list of str
        Registry names, in registration order.
    """
    return list(DATASETS)


def load_split(dataset, data_home=None, download=False, seed=0, n_train=None, n_test=None):
    """``(X_train, X_test, y_train, y_test)`` for a registered data set name.

    Digits is split 75/25 (stratified, ``seed``); MNIST and Fashion-MNIST use their own test
    sets. ``n_train``/``n_test`` draw random subsets with ``seed``. Used by the command line.

    Parameters
    ----------
    dataset : str
        A name from :func:`dataset_names` (``"digits"``, ``"mnist"``, ``"fashion-mnist"``).
    data_home : str, optional
        Folder holding ``MNIST/raw`` or ``FashionMNIST/raw``.
    download : bool, default=False
        Download MNIST/Fashion-MNIST when missing.
    seed : int, default=0
        Seeds the digits split and the subsets.
    n_train, n_test : int, optional
        Sizes of random subsets of the training and test sets.

    Returns
    -------
    tuple of ndarray
        ``(X_train, X_test, y_train, y_test)``.

    Raises
    ------
    ValueError
        Unknown data set name (the message lists the known ones).
    FileNotFoundError
        The files are missing and ``download`` is False.

    Examples
    --------
    >>> from robustkd.datasets import load_split
    >>> X_train, X_test, y_train, y_test = load_split("digits", n_train=100)
    >>> X_train.shape, X_test.shape
    ((100, 1, 8, 8), (450, 1, 8, 8))
    """
    if not isinstance(dataset, str) or dataset not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}; known datasets are {dataset_names()}")
    loaded = DATASETS[dataset].load(data_home, download, seed)
    if len(loaded) == 2:  # torch Dataset objects (train, test)
        (X_train, y_train), (X_test, y_test) = (dataset_to_arrays(d) for d in loaded)
    else:
        X_train, X_test, y_train, y_test = loaded
    rng = np.random.RandomState(seed)
    if n_train and n_train < len(X_train):
        idx = rng.permutation(len(X_train))[:n_train]
        X_train, y_train = X_train[idx], y_train[idx]
    if n_test and n_test < len(X_test):
        idx = rng.permutation(len(X_test))[:n_test]
        X_test, y_test = X_test[idx], y_test[idx]
    return X_train, X_test, y_train, y_test
