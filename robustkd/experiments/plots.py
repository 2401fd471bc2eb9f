"""The plots of :func:`robustkd.experiments.reproduce`: accuracy against eps, and teacher weights."""

__all__ = ["plot_results", "plot_teacher_weights"]

FAMILIES = (  # (prefix, label, colour map, line style)
    ("standard", "baseline", "Greys", ":"),
    ("teacher_", "teachers", "Blues", "-"),
    ("kd_", "single-teacher students", "Greens", "--"),
    ("mtkd_", "multi-teacher students", "Reds", "-."),
)


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
