"""The robustkd command line (also python -m robustkd).

Output belongs here, not in the library: this module prints tables and one-line errors.
Imports stay light until a command runs, so --help and argument errors are instant.
"""
import argparse
import dataclasses
import sys
import time

from ._names import ATTACKS, SCHEMES
from .datasets import dataset_names
from .experiments import ExperimentConfig

__all__ = ["main"]

DEVICE_HELP = "torch device: cpu, cuda, cuda:<index> or auto (CUDA when available)"
METHOD_LEGEND = (
    "standard: no defence | teacher_<a>: adversarially trained against attack <a> | kd_<a>: student of "
    "teacher_<a> alone, clean data | mtkd_uniform: student of all teachers, equal weights, clean data | "
    "mtkd_adaptive: MTKD-AR student, per-input weights ({scheme}), clean data | mtkd_adversarial: ARD-style "
    "student trained on its own adversarial examples")
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ExperimentConfig)}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the ones that mean "not set" (None, False)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _joined(values):
    return ",".join(str(v) for v in values)


class CLIError(Exception):
    """A user error, reported on one line with exit status 2."""


def _csv(kind):
    def parse(text):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind}; got {text!r}")
        if kind == "eps":
            try:
                values = [float(t) for t in items]
            except ValueError:
                raise argparse.ArgumentTypeError(f"eps must be numbers; got {text!r}") from None
            bad = [v for v in values if not v > 0 or v == float("inf")]
            if bad:
                raise argparse.ArgumentTypeError(f"eps values must be finite and > 0; got {bad}")
            return values
        return items

    return parse


def _device(text):
    if text in ("cpu", "cuda", "auto", "mps") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"invalid device {text!r}; choose cpu, cuda, cuda:<index> or auto")


def _attack_lines(attacks, n_test):
    """One line per attack saying what it is, with its steps (from the attack registry)."""
    from .attacks import available_attacks

    registry = available_attacks()
    lines = []
    for a in attacks:
        spec = registry.get(a)
        if spec is None:
            continue
        steps = spec["params"].get("nb_iter", spec["params"].get("max_iterations", 1))
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


def cmd_evaluate(args):
    """Train a standard SmallCNN on the dataset and print its robustness report."""
    from .datasets import DATASETS, load_split
    from .models import SmallCNN
    from .scoring import robustness_report
    from .teachers import AdversarialTeacher

    try:
        X_train, X_test, y_train, y_test = load_split(args.dataset, args.data_home, args.download, args.seed,
                                                      args.n_train, args.n_test)
    except FileNotFoundError as exc:
        raise CLIError(f"{exc}; or run with --download") from None
    net = AdversarialTeacher(SmallCNN, attack=None, module__input_shape=X_train.shape[1:],
                             module__n_classes=DATASETS[args.dataset].n_classes, max_epochs=args.epochs,
                             batch_size=64, train_split=None, device=args.device, random_state=args.seed,
                             verbose=0 if args.quiet else 1)
    start = time.perf_counter()
    net.fit(X_train, y_train)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    rows = robustness_report(net, X_test, y_test, attacks=args.attacks, eps=args.eps, random_state=args.seed,
                             device=args.device)
    eval_s = time.perf_counter() - start
    title = "\n".join([f"Standard SmallCNN on {args.dataset}: {len(X_train)} training / {len(X_test)} test images, "
                       f"{args.epochs} epochs (fit {fit_s:.1f}s, attacks {eval_s:.1f}s)"]
                      + _attack_lines(args.attacks, len(X_test)))
    print(format_report(rows, title))
    if args.csv:
        import csv

        with open(args.csv, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


def format_results(summary):
    """Render :func:`robustkd.experiments.reproduce` results: one methods x eps table per attack."""
    rows = summary["results"]
    methods = summary["methods"]
    eps = sorted({r["eps"] for r in rows if r["attack"] != "clean"})
    attacks = list(dict.fromkeys(r["attack"] for r in rows if r["attack"] != "clean"))
    cell = {(r["method"], r["attack"], r["eps"]): r["accuracy"] for r in rows}
    width = max(len(m) for m in methods + ["method"])
    lines = _attack_lines(attacks, summary["split"]["n_test"])
    lines.append("Methods: " + METHOD_LEGEND.format(scheme=summary["config"]["scheme"]))
    for attack in attacks:
        lines.append(f"\n{attack}")
        lines.append(f"{'method':<{width}}  {'clean':>7}  " + "  ".join(f"{'eps=' + format(e, 'g'):>8}" for e in eps))
        for m in methods:
            lines.append(f"{m:<{width}}  {cell[(m, 'clean', 0.0)]:>7.4f}  "
                         + "  ".join(f"{cell[(m, attack, e)]:>8.4f}" for e in eps))
    return "\n".join(lines)


class _ProgressPrinter:
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


def cmd_reproduce(args):
    """Train every method of the MTKD-AR comparison, evaluate it and write the results."""
    import logging

    from .experiments import reproduce

    cfg = ExperimentConfig(
        dataset=args.dataset, data_home=args.data_home, download=args.download, out=args.out, epochs=args.epochs,
        attacks=tuple(args.attacks), train_eps=args.train_eps, eval_attacks=tuple(args.eval_attacks),
        eps=tuple(args.eps), scheme=args.scheme, temperature=args.temperature, alpha=args.alpha,
        adversarial_student=not args.no_adversarial_student, n_train=args.n_train, n_test=args.n_test,
        batch_size=args.batch_size, n_jobs=args.n_jobs, device=args.device, seed=args.seed)
    logging.getLogger("robustkd").setLevel(logging.WARNING)
    start = time.perf_counter()
    printer = None
    if not args.quiet:
        n_attacks, n_adv = len(cfg.attacks), int(cfg.adversarial_student)
        n_train_steps = 4 + n_attacks + n_adv        # standard, teacher pool, kd per teacher, 2-3 students
        n_eval_steps = 3 + 2 * n_attacks + n_adv     # every model, teachers included
        printer = _ProgressPrinter(n_train_steps + n_eval_steps)
    try:
        summary = reproduce(cfg, progress=printer)
    except FileNotFoundError as exc:
        raise CLIError(f"{exc}; or run with --download") from None
    finally:
        if printer is not None:
            printer.close()
    wall = time.perf_counter() - start
    if not args.quiet:
        split = summary["split"]
        print(f"MTKD-AR on {cfg.dataset}: {split['n_train']} training / {split['n_test']} test images, "
              f"{cfg.epochs} epochs, teachers {','.join(cfg.attacks)} at eps={cfg.train_eps}, "
              f"wall time {wall:.1f}s")
        print(format_results(summary))
        print(f"\nwrote {args.out}/results.json, results.csv, accuracy_vs_eps.png, teacher_weights.png")
    return 0


def _common(p, epochs):
    p.add_argument("--dataset", choices=dataset_names(), default="digits", help="data set")
    p.add_argument("--data-home", default=None, help="folder holding MNIST/raw or FashionMNIST/raw "
                   "(default: $ROBUSTKD_DATA, else ~/robustkd_data)")
    p.add_argument("--download", action="store_true", help="download MNIST/Fashion-MNIST if missing")
    p.add_argument("--epochs", type=int, default=epochs, help="training epochs of every model")
    p.add_argument("--n-train", type=int, default=None, help="random subset of the training set (default: all of it)")
    p.add_argument("--n-test", type=int, default=None, help="random subset of the test set (default: all of it)")
    p.add_argument("--seed", type=int, default=_DEFAULTS["seed"], help="seeds the split, the models and the attacks")
    p.add_argument("--device", type=_device, default=_DEFAULTS["device"], help=DEVICE_HELP)


def build_parser():
    fmt = _HelpFormatter
    parser = argparse.ArgumentParser(prog="robustkd", description=__doc__.splitlines()[0], formatter_class=fmt)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{evaluate,reproduce}")
    ev = sub.add_parser("evaluate", help="train a standard CNN and print its accuracy under attack",
                        description="Train a standard SmallCNN and print its accuracy under attack.",
                        formatter_class=fmt)
    _common(ev, 15)
    ev.add_argument("--attacks", type=_csv("attacks"), default="fgsm,pgd,bim,mim",
                    help=f"comma-separated attacks, from {','.join(ATTACKS)}")
    ev.add_argument("--eps", type=_csv("eps"), default="0.05,0.1,0.2,0.3", help="comma-separated budgets")
    ev.add_argument("--csv", default=None, help="also write the report to this CSV file")
    ev.add_argument("--quiet", action="store_true", help="no training log")
    ev.set_defaults(func=cmd_evaluate, parser=ev)

    rp = sub.add_parser("reproduce", help="train and compare standard, adversarial, distilled and MTKD-AR models",
                        description="Train and compare standard, adversarially trained, distilled and MTKD-AR "
                                    "models; write results.json, results.csv and plots to --out.",
                        formatter_class=fmt)
    _common(rp, _DEFAULTS["epochs"])
    rp.add_argument("--out", default=_DEFAULTS["out"], help="output folder; finished models are saved in "
                    "OUT/models and reused by the next run with the same settings")
    rp.add_argument("--attacks", type=_csv("attacks"), default=_joined(_DEFAULTS["attacks"]),
                    help=f"one adversarially trained teacher per attack, from {','.join(ATTACKS)}")
    rp.add_argument("--train-eps", type=_csv("eps"), default=str(_DEFAULTS["train_eps"]),
                    help="budget of the teachers' training attacks")
    rp.add_argument("--eval-attacks", type=_csv("attacks"), default=_joined(_DEFAULTS["eval_attacks"]),
                    help=f"attacks of the evaluation, from {','.join(ATTACKS)}")
    rp.add_argument("--eps", type=_csv("eps"), default=_joined(_DEFAULTS["eps"]), help="evaluation budgets")
    rp.add_argument("--scheme", default=_DEFAULTS["scheme"], help=f"weighting scheme of the adaptive student, "
                    f"one of {','.join(SCHEMES)}")
    rp.add_argument("--temperature", type=float, default=_DEFAULTS["temperature"], help="distillation temperature")
    rp.add_argument("--alpha", type=float, default=_DEFAULTS["alpha"], help="share of the distillation term")
    rp.add_argument("--batch-size", type=int, default=_DEFAULTS["batch_size"], help="training batch size")
    rp.add_argument("--no-adversarial-student", action="store_true", help="skip the ARD-style student")
    rp.add_argument("--n-jobs", type=int, default=None, help="teachers trained in parallel (joblib; default: one at a time)")
    rp.add_argument("--quiet", action="store_true", help="no progress and no table")
    rp.set_defaults(func=cmd_reproduce, parser=rp)
    return parser


def _validate(args):
    error = args.parser.error
    for option in ("attacks", "eval_attacks"):
        unknown = [a for a in getattr(args, option, []) if a not in ATTACKS]
        if unknown:
            error(f"unknown attack(s) {unknown} in --{option.replace('_', '-')}; choose from {list(ATTACKS)}")
    if getattr(args, "scheme", SCHEMES[0]) not in SCHEMES:
        error(f"--scheme must be one of {list(SCHEMES)}; got {args.scheme!r}")
    if hasattr(args, "train_eps"):
        if len(args.train_eps) != 1:
            error(f"--train-eps takes one value; got {args.train_eps}")
        args.train_eps = args.train_eps[0]
    for name in ("epochs", "n_train", "n_test", "batch_size"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            error(f"--{name.replace('_', '-')} must be >= 1; got {value}")
    if getattr(args, "temperature", 1.0) <= 0:
        error(f"--temperature must be > 0; got {args.temperature}")
    if not 0 <= getattr(args, "alpha", 0.0) <= 1:
        error(f"--alpha must be in [0, 1]; got {args.alpha}")


def main(argv=None):
    """Entry point; returns the exit status (0, 2 for a user error, 130 after Ctrl-C)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _validate(args)
    try:
        from ._inputs import check_device

        check_device(args.device, name="--device")
        return args.func(args)
    except (CLIError, ValueError) as exc:
        print(f"robustkd: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        saved = f"; finished models are saved in {out}/models and the same command resumes from them" if out else ""
        print(f"robustkd: interrupted{saved}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
