"""The plots of :func:`robustkd.experiments.reproduce`: the clean/robust trade-off, accuracy against eps, and
teacher weights."""

__all__ = ["plot_tradeoff", "plot_results", "plot_teacher_weights", "tradeoff_points", "frontier"]

FAMILIES = (  # (prefix, label, colour map, line style)
    ("standard", "baseline", "Greys", ":"),
    ("teacher_", "teachers", "Blues", "-"),
    ("kd_", "single-teacher students", "Greens", "--"),
    ("mtkd_", "multi-teacher students", "Reds", "-."),
    ("direct_", "student trained directly", "Oranges", ":"),
)
#: Colours of :func:`plot_tradeoff`, one per family (and one for the adversarial-input student).
FAMILY_COLOURS = {"baseline": "0.45", "teachers": "tab:blue", "single-teacher students": "tab:green",
                  "multi-teacher students": "tab:red", "adversarial-input student": "tab:purple",
                  "student trained directly": "tab:orange"}


def _family(method):
    if method == "mtkd_adversarial":
        return "adversarial-input student"
    return next(label for prefix, label, _, _ in FAMILIES if method.startswith(prefix))


def _robust_cell(summary):
    """``(attack, eps)`` of the trade-off's robust accuracy: AutoAttack if the run scored it, else the worst case,
    at the teachers' training eps or the nearest eps of the run's grid."""
    rows = summary["results"]
    attack = "autoattack" if any(r["attack"] == "autoattack" for r in rows) else "worst_case"
    grid = sorted({r["eps"] for r in rows if r["attack"] == attack and r["eps"] is not None})
    return attack, min(grid, key=lambda e: abs(e - summary["config"]["train_eps"]), default=None)


def tradeoff_points(summary):
    """Per model of a run: ``(method, family, clean accuracy, robust accuracy, fit seconds)``.

    The robust accuracy is AutoAttack's at the teachers' training eps (or the nearest eps of the run's grid)
    when the run scored AutoAttack (on its subset of test images), else the worst case over the run's attacks
    there.
    """
    rows = summary["results"]
    attack, eps = _robust_cell(summary)
    cell = {(r["method"], r["attack"], r["eps"]): r["accuracy"] for r in rows}
    points = []
    for m in summary["methods"]:
        robust = cell.get((m, attack, eps))
        if robust is not None:
            points.append((m, _family(m), cell[(m, "clean", 0.0)], robust, summary["timings"].get(m)))
    return points, attack


def frontier(points):
    """The points no other point beats on both clean and robust accuracy, by falling clean accuracy."""
    kept = [p for p in points if not any(q[2] >= p[2] and q[3] >= p[3] and (q[2], q[3]) != (p[2], p[3])
                                         for q in points)]
    return sorted(kept, key=lambda p: (-p[2], p[3]))


def plot_tradeoff(summary, path):
    """Clean accuracy against robust accuracy at the training eps, one point per model with its fit time.

    Families have one colour each; the dashed line joins the models on the trade-off frontier (none is both
    more accurate and more robust than them).

    Parameters
    ----------
    summary : dict
        What :func:`robustkd.experiments.reproduce` returns (and writes as ``results.json``).
    path : str
        The PNG file written.
    """
    import matplotlib.pyplot as plt

    points, attack = tradeoff_points(summary)
    cfg = summary["config"]
    eps = _robust_cell(summary)[1]
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    for family, colour in FAMILY_COLOURS.items():
        members = [p for p in points if p[1] == family]
        if members:
            ax.scatter([p[3] for p in members], [p[2] for p in members], color=colour, label=family, s=36,
                       zorder=3)
    front = frontier(points)
    ax.plot([p[3] for p in front], [p[2] for p in front], color="0.3", linestyle="--", linewidth=1, zorder=2,
            label="trade-off frontier")
    placed = []   # the label of a point close to an earlier one goes to its left, so names do not overlap
    span_x = max((p[3] for p in points), default=1) - min((p[3] for p in points), default=0) or 1
    span_y = max((p[2] for p in points), default=1) - min((p[2] for p in points), default=0) or 1
    for m, _, clean, robust, seconds in points:
        label = m if seconds is None else f"{m} ({seconds:.0f} s)"
        near = sum(abs(robust - x) < 0.12 * span_x and abs(clean - y) < 0.03 * span_y for x, y in placed)
        ax.annotate(label, (robust, clean), textcoords="offset points", fontsize=6.5,
                    **(dict(xytext=(-4, -9 * near), ha="right") if near else dict(xytext=(4, 3))))
        placed.append((robust, clean))
    n = next((r["n_samples"] for r in summary["results"] if r["attack"] == attack), summary["split"]["n_test"])
    what = "AutoAttack" if attack == "autoattack" else "worst case over the attacks"
    ax.set_xlabel(f"{what} accuracy at eps={eps:g} ({n} test images)")
    ax.set_ylabel(f"clean accuracy ({summary['split']['n_test']} test images)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(f"{cfg['dataset']}: clean against robust accuracy, one point per model (fit time)")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _method_styles(methods):
    """Colour and line style per method: one colour family and one line style per method family."""
    import matplotlib.pyplot as plt

    styles = {}
    for prefix, _, cmap, line in FAMILIES:
        members = [m for m in methods if m.startswith(prefix)]
        for i, m in enumerate(members):
            styles[m] = dict(color=plt.get_cmap(cmap)(0.45 + 0.5 * (i + 1) / (len(members) + 1)), linestyle=line)
    return styles


def plot_results(summary, path):
    """Accuracy against eps, one panel per attack (and the worst case), one line per method.

    Method families (baseline, teachers, single-teacher students, multi-teacher students) have
    their own colour family and line style; one legend serves every panel.

    Parameters
    ----------
    summary : dict
        What :func:`robustkd.experiments.reproduce` returns (and writes as ``results.json``).
    path : str
        The PNG file written.
    """
    import matplotlib.pyplot as plt

    results, methods = summary["results"], summary["methods"]
    results = [r for r in results if r["eps"] is not None]      # the union of threat models has no eps axis
    attacks = list(dict.fromkeys(r["attack"] for r in results if r["attack"] != "clean"))
    styles = _method_styles(methods)
    cols = 3
    rows = -(-len(attacks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows + 1.2), squeeze=False)
    clean = {r["method"]: r["accuracy"] for r in results if r["attack"] == "clean"}
    for ax, attack in zip(axes.flat, attacks):
        for m in methods:
            pts = sorted((r["eps"], r["accuracy"]) for r in results if r["method"] == m and r["attack"] == attack)
            ax.plot([0.0] + [p[0] for p in pts], [clean[m]] + [p[1] for p in pts], marker="o", markersize=3,
                    label=m, **styles.get(m, {}))
        n = next(r["n_samples"] for r in results if r["attack"] == attack)
        ax.set_title(attack if n == summary["split"]["n_test"] else f"{attack} (first {n} test images)")
        ax.set_xlabel("eps")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(attacks):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8, frameon=False)
    cfg, split = summary["config"], summary["split"]
    fig.suptitle(f"{cfg['dataset']}: accuracy under attack ({split['n_train']} training / {split['n_test']} test "
                 f"images, {cfg['epochs']} epochs, teachers trained at eps={cfg['train_eps']})")
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(labels) > 5), 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_teacher_weights(summary, path):
    """Mean weight of each teacher per epoch, one panel per multi-teacher student."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    students = {k: v for k, v in summary["teacher_weights"].items() if len(v) and len(v[0]) > 1}
    if not students:
        return
    fig, axes = plt.subplots(1, len(students), figsize=(4.5 * len(students), 3.6), squeeze=False)
    for ax, (name, w) in zip(axes.flat, students.items()):
        for k, label in enumerate(summary["teacher_names"]):
            ax.plot(range(1, len(w) + 1), [row[k] for row in w], marker=".", label=f"teacher {label}")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean weight over training batches")
        ax.set_ylim(0, 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    fig.suptitle(f"{summary['config']['dataset']}: mean teacher weight per epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
