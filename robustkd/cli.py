"""The robustkd command line (also python -m robustkd).

Output belongs here, not in the library: this module prints tables and one-line errors.
Imports stay light until a command runs, so --help and argument errors are instant.
"""
import argparse
import dataclasses
import sys
import time

from ._cli_output import ProgressPrinter, attack_lines, format_report, format_results  # noqa: F401  (public)
from ._names import ATTACKS
from .experiments.config import PROTOCOLS, ExperimentConfig

__all__ = ["main"]

_FIELDS = {f.name: f for f in dataclasses.fields(ExperimentConfig)}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the ones that mean "not set" (None, False)."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def _joined(values):
    return None if values is None else ",".join(str(v) for v in values)


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
        if kind == "ints":
            try:
                return [int(t) for t in items]
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected comma-separated integers; got {text!r}") from None
        return items

    return parse


def _device(text):
    if text in ("cpu", "cuda", "auto", "mps") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"invalid device {text!r}; choose cpu, cuda, cuda:<index> or auto")


def _auto_or_float(text):
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number; got {text!r}") from None


def cmd_evaluate(args):
    """Train a standard SmallCNN on the dataset and print its robustness report."""
    from .datasets import DATASETS, load_split
    from .models import SmallCNN
    from .evaluation import robustness_report
    from .training import AdversarialTeacher

    resolved = ExperimentConfig(dataset=args.dataset, epochs=args.epochs,
                                eps=None if args.eps is None else tuple(args.eps)).resolved()
    args.epochs, args.eps = resolved.epochs, list(resolved.eps)
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
    attacks = list(dict.fromkeys(args.attacks + (["autoattack"] if args.autoattack else [])))
    rows = robustness_report(net, X_test, y_test, attacks=attacks, eps=args.eps, random_state=args.seed,
                             device=args.device, n_jobs=args.eval_jobs)
    eval_s = time.perf_counter() - start
    title = "\n".join([f"Standard SmallCNN on {args.dataset}: {len(X_train)} training / {len(X_test)} test images, "
                       f"{args.epochs} epochs (fit {fit_s:.1f}s, attacks {eval_s:.1f}s)"]
                      + attack_lines(attacks, len(X_test)))
    print(format_report(rows, title))
    if args.csv:
        import csv

        with open(args.csv, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


def cmd_reproduce(args):
    """Train every method of the MTKD-AR comparison, evaluate it and write the results."""
    import logging

    from .experiments import reproduce

    cfg = ExperimentConfig(**{name: tuple(getattr(args, name)) if isinstance(getattr(args, name), list)
                              else getattr(args, name) for name in _FIELDS}).resolved()
    logging.getLogger("robustkd").setLevel(logging.WARNING)
    start = time.perf_counter()
    printer = None
    if not args.quiet:
        n_attacks, n_adv = len(cfg.attacks), int(cfg.adversarial_student)
        n_students = (n_attacks + 2) * (2 if cfg.gradient_matching else 1) + bool(cfg.gradient_matching) + n_adv
        n_train_steps = 2 + n_students                       # standard, teacher pool, the students
        n_eval_steps = 2 + n_attacks + n_students            # every model, teachers included; the diagnostics
        printer = ProgressPrinter(n_train_steps + n_eval_steps)
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


def _option_name(name):
    return "--" + name.replace("_", "-")


def _add_config_option(parser, name, aliases=(), **override):
    """Add the command-line option of :class:`ExperimentConfig` field ``name`` (type, default, help from it)."""
    field = _FIELDS[name]
    meta = {**field.metadata, **override}
    default = override.get("default", field.default)
    if isinstance(field.default, bool):
        if field.default:
            parser.add_argument("--no-" + name.replace("_", "-"), dest=name, action="store_false",
                                help=f"do not {meta['help']}")
        else:
            parser.add_argument(_option_name(name), action="store_true", help=meta["help"])
        return
    kwargs = {"default": default, "help": meta["help"]}
    if default is None and name in PROTOCOLS["digits"]:
        per_set = "; ".join(f"{data}: {_joined(p[name]) if isinstance(p[name], tuple) else p[name]}"
                            for data, p in PROTOCOLS.items())
        kwargs["help"] += f" (default per data set, {per_set})"
    if meta["kind"] == "names":
        kwargs.update(type=_csv("attacks"), default=_joined(default))
        kwargs["help"] += f", comma-separated, from {','.join(ATTACKS)}"
        kwargs["dest"] = name
    elif meta["kind"] == "ints":
        kwargs.update(type=_csv("ints"), default=_joined(default), help=kwargs["help"] + ", comma-separated")
    elif meta["kind"] == "budgets":
        kwargs.update(type=_csv("eps"), default=_joined(default), help=kwargs["help"] + ", comma-separated")
    elif meta["kind"] == "auto_or_float":
        kwargs["type"] = _auto_or_float
    elif name == "device":
        kwargs["type"] = _device
    elif field.type in (int, float):
        kwargs["type"] = field.type
    if name == "dataset":  # argparse lists the choices itself
        kwargs["choices"] = meta["choices"]()
    elif meta["choices"] is not None:
        kwargs["help"] += f", one of {','.join(meta['choices']())}"
    parser.add_argument(_option_name(name), *aliases, **kwargs)


SHARED = ("dataset", "data_home", "download", "epochs", "n_train", "n_test", "seed", "device", "eval_jobs")


def build_parser():
    fmt = _HelpFormatter
    parser = argparse.ArgumentParser(prog="robustkd", description=__doc__.splitlines()[0], formatter_class=fmt)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{evaluate,reproduce}")
    ev = sub.add_parser("evaluate", help="train a standard CNN and print its accuracy under attack",
                        description="Train a standard SmallCNN and print its accuracy under attack.",
                        formatter_class=fmt)
    for name in SHARED:
        _add_config_option(ev, name)
    _add_config_option(ev, "attacks", default=("fgsm", "pgd", "bim", "mim"),
                       help="attacks of the evaluation besides AutoAttack")
    _add_config_option(ev, "autoattack")
    _add_config_option(ev, "eps")
    ev.add_argument("--csv", default=None, help="also write the report to this CSV file")
    ev.add_argument("--quiet", action="store_true", help="no training log")
    ev.set_defaults(func=cmd_evaluate, parser=ev)

    rp = sub.add_parser("reproduce", help="train and compare standard, adversarial, distilled and MTKD-AR models",
                        description="Train and compare standard, adversarially trained, distilled and MTKD-AR "
                                    "models; write results.json, results.csv and plots to --out.",
                        formatter_class=fmt)
    for name in _FIELDS:
        _add_config_option(rp, name, aliases=("--teachers",) if name == "attacks" else ())
    rp.add_argument("--quiet", action="store_true", help="no progress and no table")
    rp.set_defaults(func=cmd_reproduce, parser=rp)
    return parser


def _validate(args):
    """Check the parsed options with :meth:`ExperimentConfig.check`, naming the options in errors."""
    values = {name: getattr(args, name) for name in _FIELDS if hasattr(args, name)}
    try:
        ExperimentConfig(**values).check(label=_option_name)
    except (TypeError, ValueError) as exc:
        args.parser.error(str(exc))


def main(argv=None):
    """Entry point; returns the exit status (0, 2 for a user error, 130 after Ctrl-C)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _validate(args)
    try:
        from ._validation import check_device

        check_device(args.device, name="--device")
        return args.func(args)
    except (CLIError, ValueError) as exc:
        print(f"robustkd: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        saved = (f"; finished models and evaluations are saved in {out}/models and {out}/evaluations, and the "
                 "same command resumes from them") if out else ""
        print(f"robustkd: interrupted{saved}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
