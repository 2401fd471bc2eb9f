"""Packaging for robustkd. Version ranges stay open for users; CI pins torch/torchvision
in requirements/pinned.txt."""
import os
import re

from setuptools import find_packages, setup

HERE = os.path.abspath(os.path.dirname(__file__))
with open(os.path.join(HERE, "robustkd", "__init__.py"), encoding="utf-8") as f:
    VERSION = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)
URL = "https://github.com/robustkd/robustkd"
with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
    # images and links relative to the repository resolve on GitHub only: absolute ones for the package index
    LONG_DESCRIPTION = re.sub(r"(!?\[[^\]]*\]\()(?!https?://|#)([^)\s]+\))",
                              lambda m: m.group(1) + URL + ("/raw/main/" if m.group(1)[0] == "!" else "/blob/main/")
                              + m.group(2), f.read())

EXTRAS = {
    "plot": ["matplotlib>=3.5"],
    # pyautoattack packages the original AutoAttack code: the reference our APGD is checked against
    # dask[distributed]: tests/test_dask.py fits a pool and a grid search on a real LocalCluster
    # pyyaml: tests/test_packaging.py reads CITATION.cff
    "test": ["pytest>=7", "hypothesis>=6", "numpydoc>=1.6", "matplotlib>=3.5", "pandas>=1.5", "pyautoattack>=0.2",
             "dask[distributed]>=2023.1", "pyyaml>=5.1"],
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
    url=URL,
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
    license_files=["LICENSE"],
    keywords=["adversarial robustness", "adversarial training", "knowledge distillation",
              "multi-teacher distillation", "adversarial attacks", "pytorch", "scikit-learn", "skorch"],
    project_urls={
        "Documentation": URL + "/tree/main/docs",
        "Source": URL,
        "Changelog": URL + "/blob/main/CHANGES.md",
        "Issue tracker": URL + "/issues",
    },
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Science/Research",
        "License :: OSI Approved :: BSD License",
        "Operating System :: OS Independent",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.9",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Security",
    ],
)
