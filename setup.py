"""Packaging for robustkd. Version ranges stay open for users; CI pins torch/torchvision
in requirements/pinned.txt."""
import os
import re

from setuptools import find_packages, setup

HERE = os.path.abspath(os.path.dirname(__file__))
with open(os.path.join(HERE, "robustkd", "__init__.py"), encoding="utf-8") as f:
    VERSION = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)
with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
    LONG_DESCRIPTION = f.read()

EXTRAS = {
    "plot": ["matplotlib>=3.5"],
    # pyautoattack packages the original AutoAttack code: the reference our APGD is checked against
    # dask[distributed]: tests/test_dask.py fits a pool and a grid search on a real LocalCluster
    "test": ["pytest>=7", "hypothesis>=6", "numpydoc>=1.6", "matplotlib>=3.5", "pandas>=1.5", "pyautoattack>=0.2",
             "dask[distributed]>=2023.1"],
    "dask": ["dask[distributed]>=2023.1"],
    "docs": ["sphinx>=7", "numpydoc>=1.6", "sphinx-gallery>=0.15", "matplotlib>=3.5", "pandas>=1.5",
             "sphinx-mathjax-offline>=0.0.2"],
}
EXTRAS["dev"] = sorted(set(sum(EXTRAS.values(), [])))

setup(
    name="robustkd",
    version=VERSION,
    description="Adversarial robustness through adaptive multi-teacher knowledge distillation (MTKD-AR), "
                "with a scikit-learn API",
    long_description=LONG_DESCRIPTION,
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    packages=find_packages(include=["robustkd", "robustkd.*"]),
    python_requires=">=3.9",
    install_requires=[
        "torch>=1.13",
        "torchvision>=0.14",
        "skorch>=0.15",
        "scikit-learn>=1.2",
        "advertorch>=0.2.3",
        "joblib>=1.3",   # joblib.parallel_config
        "numpy>=1.22",
        "tqdm>=4.60",
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["robustkd=robustkd.cli:main"]},
    classifiers=[
        "License :: OSI Approved :: BSD License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
