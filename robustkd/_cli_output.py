"""What the command line prints: tables with titles and legends, and the progress display."""
import sys

__all__ = ["format_report", "format_results", "ProgressPrinter", "attack_lines"]

METHOD_LEGEND = (
    "standard: no defence | teacher_<a>: adversarially trained against attack <a> | kd_<a>: student of "
    "teacher_<a> alone, clean data | mtkd_uniform: student of all teachers, equal weights, clean data | "
    "mtkd_adaptive: MTKD-AR student, per-input weights ({scheme}), clean data (the paper's setting) | *_gm: the "
    "same with input-gradient matching | mtkd_default: robustkd's default (equal weights{terms}), "
    "clean data | mtkd_adversarial: ARD-style student trained on its own adversarial examples")


def method_legend(config):
    """The methods' legend for a run's ``config``, naming ``mtkd_default``'s terms as that run trained them."""
    terms = [name for key, name in (("gradient_matching", "input-gradient matching"),
                                    ("feature_matching", "feature matching")) if config.get(key)]
    return METHOD_LEGEND.format(scheme=config["scheme"], terms="".join(", " + t for t in terms))


def attack_lines(attacks, n_test):
    """One line per attack saying what it is, with its steps (from the attack registry)."""
    from .attacks import available_attacks

    registry = available_attacks()
    lines = []
    for a in attacks:
        spec = registry.get(a)
        if spec is None:
            continue
        params = spec["params"]
        steps = params.get("nb_iter", params.get("max_iterations", params.get("n_iter", 1)))
        lines.append(f"  {a}: {spec['norm']} budget, {steps} step(s). {spec['description']}")
    return [f"Accuracy on {n_test} test images: clean, and under each attack at each eps "
            "(worst_case: a sample counts only if it survives every attack)."] + lines


def format_report(rows, title=None):
    """Render :func:`robustkd.robustness_report` records as a text table (attacks x eps)."""
    eps = sorted({r["eps"] for r in rows if r["attack"] != "clean"})
    attacks = list(dict.fromkeys(r["attack"] for r in rows if r["attack"] != "clean"))
    cell = {(r["attack"], r["eps"]): r["accuracy"] for r in rows}
    clean = next(r["accuracy"] for r in rows if r["attack"] == "clean")
    width = max(len(a) for a in attacks + ["attack"])
    lines = [title] if title else []
    lines.append(f"{'attack':<{width}}  " + "  ".join(f"eps={e:<6g}" for e in eps))
    lines.append(f"{'clean':<{width}}  " + "  ".join(f"{clean:>10.4f}" for _ in eps))
    for a in attacks:
        lines.append(f"{a:<{width}}  " + "  ".join(f"{cell[(a, e)]:>10.4f}" for e in eps))
    return "\n".join(lines)


def format_results(summary):
    """Render :func:`robustkd.experiments.reproduce` results: one methods x eps table per attack, then the union
    of the teachers' threat models with fit times, then the teachers' agreement diagnostics."""
    rows = [r for r in summary["results"] if r["eps"] is not None]
    methods = summary["methods"]
    eps = sorted({r["eps"] for r in rows if r["attack"] != "clean"})
    attacks = list(dict.fromkeys(r["attack"] for r in rows if r["attack"] != "clean"))
    cell = {(r["method"], r["attack"], r["eps"]): r["accuracy"] for r in rows}
    width = max(len(m) for m in methods + ["method"])
    lines = attack_lines(attacks, summary["split"]["n_test"])
    lines.append("Methods: " + method_legend(summary["config"]))
    n_of = {r["attack"]: r["n_samples"] for r in rows}
    for attack in attacks:
        subset = n_of[attack] != summary["split"]["n_test"]
        lines.append(f"\n{attack}" + (f" (on the first {n_of[attack]} test images)" if subset else ""))
        lines.append(f"{'method':<{width}}  {'clean':>7}  " + "  ".join(f"{'eps=' + format(e, 'g'):>8}" for e in eps))
        for m in methods:
            lines.append(f"{m:<{width}}  {cell[(m, 'clean', 0.0)]:>7.4f}  "
                         + "  ".join(f"{cell[(m, attack, e)]:>8.4f}" for e in eps))
    return "\n".join(lines + _union_lines(summary, width) + _diagnostic_lines(summary))


def _union_lines(summary, width):
    union = {r["method"]: r for r in summary["results"] if r["attack"] == "union"}
    if not union:
        return []
    first = next(iter(union.values()))
    clean = {r["method"]: r["accuracy"] for r in summary["results"] if r["attack"] == "clean"}
    lines = [f"\nunion of the teachers' threat models: {first['threat_model']} (a sample counts only if it survives "
             f"every attack at its own budget; first {first['n_samples']} test images)",
             f"{'method':<{width}}  {'clean':>7}  {'union':>7}  {'fit':>8}"]
    for m in summary["methods"]:
        if m in union:
            fit = summary["timings"].get(m)
            lines.append(f"{m:<{width}}  {clean[m]:>7.4f}  {union[m]['accuracy']:>7.4f}  "
                         + (f"{fit:>7.0f}s" if fit is not None else f"{'':>8}"))
    return lines


def _diagnostic_lines(summary):
    d = summary.get("diagnostics")
    if not d:
        return []
    k = len(summary["teacher_names"])
    cos = [[round(v, 2) for v in row[:k]] for row in d["gradient_cosine"][:k]]
    pairs = [d["gradient_cosine"][i][j] for i in range(k) for j in range(k) if i != j]
    agree = [d["agreement"][i][j] for i in range(k) for j in range(k) if i != j]
    lines = [f"\nteachers on the first {d['n_samples']} test images (per-input weighting can matter only where "
             f"they differ): pairwise agreement {sum(agree) / len(agree):.1%} on average, "
             f"mean input-gradient cosine {sum(pairs) / len(pairs):.2f} (matrix {cos})" if pairs else
             "\none teacher: nothing to weight"]
    for i, m in enumerate(d["models"][k:], start=k):
        lines.append(f"  {m}: input-gradient cosine to each teacher "
                     + ", ".join(f"{d['gradient_cosine'][i][j]:.2f}" for j in range(k)))
    return lines


class ProgressPrinter:
    """A step bar (counted when a step ends, no overall estimate) plus one line per finished epoch."""

    def __init__(self, total):
        import logging

        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="step", file=sys.stderr, dynamic_ncols=True,
                        bar_format="{desc} {n_fmt}/{total_fmt} steps [{elapsed}]")
        bar = self.bar

        class _Handler(logging.Handler):
            def emit(self, record):
                bar.write(self.format(record), file=sys.stderr)

        self.handler = _Handler()
        self.logger = logging.getLogger("robustkd.progress")
        self.logger.addHandler(self.handler)
        self.level = self.logger.level
        self.logger.setLevel(logging.INFO)

    def __call__(self, stage, name):
        if stage == "done":
            self.bar.update(1)
        elif stage != "reusing":
            self.bar.set_description_str(f"{stage} {name}")

    def close(self):
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)
        self.bar.close()


