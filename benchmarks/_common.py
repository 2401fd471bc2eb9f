"""Helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``, which puts this folder on
``sys.path``)."""
import glob

import joblib


def load_teachers(patterns):
    """The teachers of every file matching ``patterns`` (globs, in order; files sorted within a glob): a saved
    TeacherPool's ``teachers_``, or one saved teacher (files as ``robustkd reproduce`` writes them,
    ``{"model": ...}``, or the bare estimator)."""
    pool = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            saved = joblib.load(path)
            model = saved["model"] if isinstance(saved, dict) else saved
            pool.extend(getattr(model, "teachers_", [model]))
    if not pool:
        raise SystemExit(f"no teacher files match {patterns}")
    return pool


def parse_params(items, sep):
    """``["tau=0.1", "threat_models=union"]`` -> ``{"tau": 0.1, "threat_models": "union"}`` (``sep`` between
    key and value); each value becomes an int, else a float, else stays a string."""
    params = {}
    for item in items:
        key, _, value = item.partition(sep)
        for kind in (int, float, str):
            try:
                params[key] = kind(value)
                break
            except ValueError:
                continue
    return params
