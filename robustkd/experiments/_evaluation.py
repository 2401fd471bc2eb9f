"""How :func:`reproduce` evaluates a model: its attacks, the union of the teachers' threat models, and the saved
evaluations that a re-run reuses."""
import hashlib
import json
import os
import time

from .config import teacher_spec

__all__ = ["eval_attacks", "union_members", "with_union"]

MODEL_FORMAT = "robustkd-run-model-4"  # part of every model key: files from older versions are not reused


def _key(**parts):
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _eval_key(model_file, cfg, n_test, described):
    """Identifies one model file (path and modification time: a re-trained model is evaluated again), the
    evaluation's settings, and the attacks' code (``described``: package versions, each attack's class and
    parameters), so another release of robustkd or its attacks evaluates again."""
    members = union_members(cfg)
    union = {} if _derivable(cfg, members) else {"union": members}   # a derivable union changes nothing run
    return _key(model=os.path.abspath(model_file), mtime=os.stat(model_file).st_mtime_ns, attacks=eval_attacks(cfg),
                eps=list(cfg.eps), autoattack_n_test=cfg.autoattack_n_test, seed=cfg.seed, n_test=n_test,
                device=cfg.device, format=MODEL_FORMAT, code=described, **union)


def _evaluate_or_load(path, evaluate, log, name):
    """A model's report rows and evaluation seconds, from ``path`` when a previous run finished them (so a run
    interrupted during a long evaluation resumes with the next model), else computed and saved there."""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        log("reusing", f"evaluation of {name}")
        return saved["rows"], saved["seconds"]
    start = time.perf_counter()
    rows = evaluate()
    seconds = time.perf_counter() - start
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump({"rows": rows, "seconds": seconds}, f)
    os.replace(path + ".tmp", path)
    return rows, seconds


def eval_attacks(cfg):
    """The attacks of the evaluation: ``cfg.eval_attacks``, then AutoAttack unless ``cfg.autoattack`` is False."""
    return list(dict.fromkeys(list(cfg.eval_attacks) + (["autoattack"] if cfg.autoattack else [])))


def union_members(cfg):
    """The union of the teachers' threat models as ``(attack, eps)`` pairs: every evaluation attack at each
    L-inf teacher's budget, and L2 APGD (``apgd_l2``, APGD-CE then APGD-T) at each L2 teacher's radius."""
    from ..attacks import available_attacks

    registry, linf, l2 = available_attacks(), set(), set()
    for entry in cfg.attacks or ():
        name, eps = teacher_spec(entry)
        (l2 if registry[name]["norm"] == "l2" else linf).add(cfg.train_eps if eps is None else eps)
    return [(a, e) for e in sorted(linf) for a in eval_attacks(cfg)] + [("apgd_l2", r) for r in sorted(l2)]


def _derivable(cfg, members):
    """Whether the union is the worst case at the largest L-inf budget of the report: L-inf members only, at
    budgets of ``cfg.eps`` (the balls are nested, and the report runs an attack at a larger eps only on the
    samples that survived it at the smaller ones, so the per-sample AND over the members is that worst case)."""
    return all(a != "apgd_l2" for a, _ in members) and all(e in cfg.eps for _, e in members)


def with_union(rows, cfg):
    """``rows`` with the union row (``attack="union"``), derived from the worst case when it can be."""
    from ..threat_models import union_name

    members = union_members(cfg)
    if not members or any(r["attack"] == "union" for r in rows) or not _derivable(cfg, members):
        return rows
    worst = next(r for r in rows if r["attack"] == "worst_case" and r["eps"] == max(e for _, e in members))
    return rows + [dict(worst, attack="union", eps=None, threat_model=union_name(members))]


def _report(robustness_report, model, X, y, cfg):
    """One model's report; with ``cfg.autoattack_n_test``, AutoAttack, the worst case and the union of the
    teachers' threat models on the first images only. A union derivable from the worst case is left to
    :func:`with_union`, which the runner applies to fresh and saved evaluations alike.

    The other attacks run on every image. Per-sample seeds depend on a sample's position, which is
    the same in the subset, so their masks on the subset are those of the full run.
    """
    attacks = eval_attacks(cfg)
    members = union_members(cfg)
    union = None if _derivable(cfg, members) else members
    kwargs = dict(eps=list(cfg.eps), random_state=cfg.seed, device=cfg.device, n_jobs=cfg.eval_jobs)
    n_aa = cfg.autoattack_n_test
    if "autoattack" not in attacks or not n_aa or n_aa >= len(X):
        return robustness_report(model, X, y, attacks=attacks, union=union, **kwargs)
    subset = robustness_report(model, X[:n_aa], y[:n_aa], attacks=attacks, union=union, **kwargs)
    cheap = [a for a in attacks if a != "autoattack"]
    full = robustness_report(model, X, y, attacks=cheap or ["fgsm"], checks=None, **kwargs)
    cell = {(r["attack"], r["eps"]): r for r in full if r["attack"] in ["clean"] + cheap}
    cell.update({(r["attack"], r["eps"]): r for r in subset if r["attack"] in ("autoattack", "worst_case", "union")})
    rows = [cell[("clean", 0.0)]] + [cell[(a, e)] for e in cfg.eps for a in attacks + ["worst_case"]]
    return rows + ([cell[("union", None)]] if union else [])


