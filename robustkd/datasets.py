"""Image datasets as ``(n, channels, height, width)`` float32 arrays in [0, 1].

``load_digits_images`` (scikit-learn's bundled 8x8 digits) needs no download and is
the library's default data. MNIST and Fashion-MNIST come through torchvision, from
``data_home`` (torchvision's layout: ``data_home/MNIST/raw``,
``data_home/FashionMNIST/raw``), downloaded there only when ``download=True``.
"""
import dataclasses
import os

import numpy as np

__all__ = ["get_data_home", "load_digits_images", "load_mnist", "load_fashion_mnist", "load_split", "DATASETS",
           "DatasetSpec", "dataset_names"]


def get_data_home(data_home=None):
    """Return the data folder: ``data_home``, else ``$ROBUSTKD_DATA``, else ``~/robustkd_data``.

    Parameters
    ----------
    data_home : str or path-like, optional
        Folder to use; ``~`` is expanded.

    Returns
    -------
    str
        Absolute path of the data folder.
    """
    if data_home is None:
        data_home = os.environ.get("ROBUSTKD_DATA", os.path.join("~", "robustkd_data"))
    return os.path.abspath(os.path.expanduser(os.fspath(data_home)))


def load_digits_images():
    """Load scikit-learn's bundled 8x8 handwritten digits as images.

    Returns
    -------
    X : ndarray of shape (1797, 1, 8, 8), float32
        Pixel intensities scaled from 0..16 to [0, 1].
    y : ndarray of shape (1797,), int64
        Digit labels 0..9.

    Examples
    --------
    >>> from robustkd.datasets import load_digits_images
    >>> X, y = load_digits_images()
    >>> X.shape, X.dtype, float(X.max()), y.dtype
    ((1797, 1, 8, 8), dtype('float32'), 1.0, dtype('int64'))
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    return X, digits.target.astype(np.int64)


def _load_torchvision(cls_name, data_home, train, download):
    import torchvision.datasets

    if not isinstance(train, bool):
        raise TypeError(f"train must be True (training set) or False (test set); got train={train!r}")
    root = get_data_home(data_home)
    cls = getattr(torchvision.datasets, cls_name)
    try:
        ds = cls(root=root, train=train, download=download)
    except RuntimeError as exc:
        if download:
            raise
        raise FileNotFoundError(
            f"{cls_name} not found under data_home={root!r} (expected {os.path.join(root, cls_name, 'raw')}); "
            "pass download=True to fetch it, or data_home= pointing at the folder that holds "
            f"{cls_name}/raw"
        ) from exc
    X = (ds.data.numpy().astype(np.float32) / 255.0)[:, None, :, :]
    return X, ds.targets.numpy().astype(np.int64)


def load_mnist(data_home=None, *, train=True, download=False):
    """Load MNIST through torchvision.

    Parameters
    ----------
    data_home : str or path-like, optional
        Folder holding ``MNIST/raw`` (see :func:`get_data_home` for the default).
    train : bool, default=True
        The 60,000-image training set if True, else the 10,000-image test set.
    download : bool, default=False
        Download the files into ``data_home`` if they are missing.

    Returns
    -------
    X : ndarray of shape (n, 1, 28, 28), float32 in [0, 1]
        Images scaled from 0..255.
    y : ndarray of shape (n,), int64
        Class labels 0..9.

    Raises
    ------
    FileNotFoundError
        The data is not in ``data_home`` and ``download`` is False.
    """
    return _load_torchvision("MNIST", data_home, train, download)


def load_fashion_mnist(data_home=None, *, train=True, download=False):
    """Load Fashion-MNIST through torchvision.

    Parameters
    ----------
    data_home : str or path-like, optional
        Folder holding ``FashionMNIST/raw`` (see :func:`get_data_home` for the default).
    train : bool, default=True
        The 60,000-image training set if True, else the 10,000-image test set.
    download : bool, default=False
        Download the files into ``data_home`` if they are missing.

    Returns
    -------
    X : ndarray of shape (n, 1, 28, 28), float32 in [0, 1]
        Images scaled from 0..255.
    y : ndarray of shape (n,), int64
        Class labels 0..9.

    Raises
    ------
    FileNotFoundError
        The data is not in ``data_home`` and ``download`` is False.
    """
    return _load_torchvision("FashionMNIST", data_home, train, download)


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


DATASETS = {spec.name: spec for spec in (
    DatasetSpec("digits", _digits_split, 10, "scikit-learn's bundled 8x8 digits, split 75/25 (no download)"),
    DatasetSpec("mnist", _torchvision_split(load_mnist), 10, "MNIST 28x28, its own 60,000/10,000 split"),
    DatasetSpec("fashion-mnist", _torchvision_split(load_fashion_mnist), 10,
                "Fashion-MNIST 28x28, its own 60,000/10,000 split"),
)}


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
    X_train, X_test, y_train, y_test = DATASETS[dataset].load(data_home, download, seed)
    rng = np.random.RandomState(seed)
    if n_train and n_train < len(X_train):
        idx = rng.permutation(len(X_train))[:n_train]
        X_train, y_train = X_train[idx], y_train[idx]
    if n_test and n_test < len(X_test):
        idx = rng.permutation(len(X_test))[:n_test]
        X_test, y_test = X_test[idx], y_test[idx]
    return X_train, X_test, y_train, y_test
