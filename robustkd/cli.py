"""The ``robustkd`` command line (also ``python -m robustkd``).

Output belongs here, not in the library: this module prints tables and one-line errors.
"""
import argparse
import sys
import time

__all__ = ["main"]

DATASETS = ("digits", "mnist", "fashion-mnist")


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
    import torch
    from skorch import NeuralNetClassifier

    from .models import SmallCNN
    from .scoring import robustness_report

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError(f"--device {args.device} was asked for, but CUDA is not available here")
    from .experiments import load_split

    try:
        X_train, X_test, y_train, y_test = load_split(args.dataset, args.data_home, args.download, args.seed,
                                                      args.n_train, args.n_test)
    except FileNotFoundError as exc:
        raise CLIError(f"{exc}; or run with --download") from None
    torch.manual_seed(args.seed)
    net = NeuralNetClassifier(
        SmallCNN, module__input_shape=X_train.shape[1:], module__n_classes=int(y_train.max()) + 1,
        criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=1e-3,
        max_epochs=args.epochs, batch_size=64, train_split=None, device=args.device,
        verbose=0 if args.quiet else 1,
    )
    start = time.perf_counter()
    net.fit(X_train, y_train)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    rows = robustness_report(net, X_test, y_test, attacks=args.attacks, eps=args.eps, random_state=args.seed)
    eval_s = time.perf_counter() - start
    title = (f"Standard SmallCNN on {args.dataset}: {len(X_train)} training / {len(X_test)} test images, "
             f"{args.epochs} epochs (fit {fit_s:.1f}s, attacks {eval_s:.1f}s)")
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
    lines = []
    for attack in attacks:
        lines.append(f"\n{attack}")
        lines.append(f"{'method':<{width}}  {'clean':>7}  " + "  ".join(f"{'eps=' + format(e, 'g'):>8}" for e in eps))
        for m in methods:
            lines.append(f"{m:<{width}}  {cell[(m, 'clean', 0.0)]:>7.4f}  "
                         + "  ".join(f"{cell[(m, attack, e)]:>8.4f}" for e in eps))
    return "\n".join(lines)


def cmd_reproduce(args):
    """Train every method of the MTKD-AR comparison, evaluate it and write the results."""
    import logging

    import torch

    from .experiments import ExperimentConfig, reproduce

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError(f"--device {args.device} was asked for, but CUDA is not available here")
    cfg = ExperimentConfig(
        dataset=args.dataset, data_home=args.data_home, download=args.download, out=args.out, epochs=args.epochs,
        attacks=tuple(args.attacks), train_eps=args.train_eps, eval_attacks=tuple(args.eval_attacks),
        eps=tuple(args.eps), scheme=args.scheme, adversarial_student=not args.no_adversarial_student,
        n_train=args.n_train, n_test=args.n_test, n_jobs=args.n_jobs, device=args.device, seed=args.seed)
    logging.getLogger("robustkd").setLevel(logging.WARNING)
    start = time.perf_counter()
    steps = None
    if not args.quiet:
        from tqdm.auto import tqdm

        n_attacks, n_adv = len(cfg.attacks), int(cfg.adversarial_student)
        n_train_steps = 4 + n_attacks + n_adv        # standard, teacher pool, kd per teacher, 2-3 students
        n_eval_steps = 3 + 2 * n_attacks + n_adv     # every model, teachers included
        steps = tqdm(total=n_train_steps + n_eval_steps, unit="step", file=sys.stderr)

    def progress(message):
        if steps is not None:
            steps.set_description(message)
            if not message.startswith("reusing"):
                steps.update(1)

    try:
        summary = reproduce(cfg, progress=progress)
    except FileNotFoundError as exc:
        raise CLIError(f"{exc}; or run with --download") from None
    finally:
        if steps is not None:
            steps.close()
    wall = time.perf_counter() - start
    if not args.quiet:
        split = summary["split"]
        print(f"MTKD-AR on {cfg.dataset}: {split['n_train']} training / {split['n_test']} test images, "
              f"{cfg.epochs} epochs, teachers {','.join(cfg.attacks)} at eps={cfg.train_eps}, "
              f"wall time {wall:.1f}s")
        print(format_results(summary))
        print(f"\nwrote {args.out}/results.json, results.csv, accuracy_vs_eps.png, teacher_weights.png")
    return 0


def build_parser():
    from .attacks import available_attacks

    parser = argparse.ArgumentParser(prog="robustkd", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="train a standard CNN and print its accuracy under attack")
    ev.add_argument("--dataset", choices=DATASETS, default="digits")
    ev.add_argument("--data-home", default=None, help="folder holding MNIST/raw or FashionMNIST/raw")
    ev.add_argument("--download", action="store_true", help="download MNIST/Fashion-MNIST if missing")
    ev.add_argument("--epochs", type=int, default=15)
    ev.add_argument("--attacks", type=_csv("attacks"), default=["fgsm", "pgd", "bim", "mim"],
                    help=f"comma-separated, from {','.join(sorted(available_attacks()))}")
    ev.add_argument("--eps", type=_csv("eps"), default=[0.05, 0.1, 0.2, 0.3])
    ev.add_argument("--n-train", type=int, default=None, help="subsample the training set")
    ev.add_argument("--n-test", type=int, default=None, help="subsample the test set")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--csv", default=None, help="also write the report to this CSV file")
    ev.add_argument("--quiet", action="store_true", help="no training log")
    ev.set_defaults(func=cmd_evaluate)

    rp = sub.add_parser("reproduce", help="train and compare standard, adversarial, distilled and MTKD-AR models")
    rp.add_argument("--dataset", choices=DATASETS, default="digits")
    rp.add_argument("--data-home", default=None, help="folder holding MNIST/raw or FashionMNIST/raw")
    rp.add_argument("--download", action="store_true", help="download MNIST/Fashion-MNIST if missing")
    rp.add_argument("--out", default="robustkd_out", help="output folder (models are reused from it)")
    rp.add_argument("--epochs", type=int, default=15, help="epochs for every model")
    rp.add_argument("--attacks", type=_csv("attacks"), default=["fgsm", "pgd", "mim"],
                    help="one adversarially trained teacher per attack")
    rp.add_argument("--train-eps", type=_csv("eps"), default=[0.2], help="teachers' training budget")
    rp.add_argument("--eval-attacks", type=_csv("attacks"), default=["fgsm", "pgd", "bim", "mim", "cw_linf"])
    rp.add_argument("--eps", type=_csv("eps"), default=[0.05, 0.1, 0.2, 0.3], help="evaluation budgets")
    rp.add_argument("--scheme", default="confidence", help="weighting scheme of the adaptive student")
    rp.add_argument("--no-adversarial-student", action="store_true", help="skip the ARD-style student")
    rp.add_argument("--n-train", type=int, default=None, help="subsample the training set")
    rp.add_argument("--n-test", type=int, default=None, help="subsample the test set")
    rp.add_argument("--n-jobs", type=int, default=None, help="teachers trained in parallel")
    rp.add_argument("--device", default="cpu")
    rp.add_argument("--seed", type=int, default=0)
    rp.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    rp.set_defaults(func=cmd_reproduce)
    return parser


def _validate(parser, args):
    from .attacks import available_attacks

    from .weighting import SCHEMES

    for option in ("attacks", "eval_attacks"):
        unknown = [a for a in getattr(args, option, []) if a not in available_attacks()]
        if unknown:
            parser.error(f"unknown attack(s) {unknown} in --{option.replace('_', '-')}; "
                         f"choose from {sorted(available_attacks())}")
    if getattr(args, "scheme", "confidence") not in SCHEMES:
        parser.error(f"--scheme must be one of {list(SCHEMES)}; got {args.scheme!r}")
    if hasattr(args, "train_eps"):
        if len(args.train_eps) != 1:
            parser.error(f"--train-eps takes one value; got {args.train_eps}")
        args.train_eps = args.train_eps[0]
    for name in ("epochs", "n_train", "n_test"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1; got {value}")


def main(argv=None):
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _validate(parser, args)
    try:
        return args.func(args)
    except (CLIError, ValueError) as exc:
        print(f"robustkd: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
