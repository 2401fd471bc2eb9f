import csv

import pytest

from robustkd.cli import main


def test_evaluate_prints_a_full_table_and_writes_csv(tmp_path, capsys):
    out = tmp_path / "r.csv"
    rc = main(["evaluate", "--epochs", "2", "--attacks", "fgsm,pgd", "--eps", "0.1,0.3", "--n-test", "60",
               "--quiet", "--csv", str(out)])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Standard SmallCNN on digits") and "Accuracy on 60 test images" in lines[1]
    assert lines[2].startswith("  fgsm: linf budget, 1 step(s)") and lines[3].startswith("  pgd: linf budget, 10 step(s)")
    assert lines[4].startswith("  autoattack: linf budget, 100 step(s). AutoAttack, standard version")
    header = next(i for i, line in enumerate(lines) if line.startswith("attack "))
    assert lines[header].split() == ["attack", "eps=0.1", "eps=0.3"]
    # AutoAttack is part of the evaluation unless --no-autoattack
    assert [line.split()[0] for line in lines[header + 1:]] == ["clean", "fgsm", "pgd", "autoattack", "worst_case"]
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1 + 2 * 4 and {r["n_samples"] for r in rows} == {"60"}
    worst = {r["eps"]: float(r["accuracy"]) for r in rows if r["attack"] == "worst_case"}
    assert all(worst[r["eps"]] <= float(r["accuracy"]) for r in rows if r["attack"] != "clean")


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--dataset", "cifar"], "invalid choice: 'cifar'"),
    (["evaluate", "--attacks", "pgd,foo"], "unknown attack(s) ['foo']"),
    (["evaluate", "--eps", "0,0.1"], "eps values must be finite and > 0"),
    (["evaluate", "--epochs", "0"], "--epochs must be >= 1"),
    (["evaluate", "--eval-jobs", "0"], "--eval-jobs must be an integer >= 1 or <= -1 (-1: every core); got 0"),
])
def test_bad_arguments_exit_nonzero_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err.splitlines()[-1]


def test_missing_data_is_one_line_not_a_traceback(tmp_path, capsys):
    assert main(["evaluate", "--dataset", "mnist", "--data-home", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("robustkd: error: MNIST not found") and "--download" in err[0]


TINY = ["reproduce", "--n-train", "240", "--n-test", "60", "--epochs", "1", "--attacks", "fgsm,pgd",
        "--eval-attacks", "fgsm,pgd", "--no-autoattack", "--eps", "0.1,0.2", "--quiet"]
METHODS = ["standard", "teacher_fgsm", "teacher_pgd", "kd_fgsm", "kd_pgd", "mtkd_uniform", "mtkd_adaptive",
           "kd_fgsm_gm", "kd_pgd_gm", "mtkd_uniform_gm", "mtkd_adaptive_gm", "mtkd_default", "mtkd_adversarial"]


def test_reproduce_writes_every_cell_and_reuses_saved_models(tmp_path, capsys):
    import json

    import joblib
    import torch

    out = tmp_path / "out"
    assert main(TINY + ["--out", str(out)]) == 0
    for name in ("results.json", "results.csv", "tradeoff.png", "accuracy_vs_eps.png", "teacher_weights.png"):
        assert (out / name).stat().st_size > 0, name
    first = json.loads((out / "results.json").read_text())
    assert first["methods"] == METHODS and not any(first["reused"].values())
    cells = {(r["method"], r["attack"], r["eps"]) for r in first["results"]}
    expected = {(m, "clean", 0.0) for m in METHODS} | {(m, "union", None) for m in METHODS} | {
        (m, a, e) for m in METHODS for a in ("fgsm", "pgd", "worst_case") for e in (0.1, 0.2)}
    assert cells == expected and len(first["results"]) == len(expected)
    assert first["config"]["feature_matching"] == 0.0     # "auto" on 8x8 digits: the weight the run used
    default = joblib.load(next((out / "models").glob("mtkd_default-*.joblib")))["model"]
    assert default.feature_matching == 0.0 and default.gradient_matching == 2.0
    # so on digits the default student is gradient matching alone with equal weights, the same network
    gm = joblib.load(next((out / "models").glob("mtkd_uniform_gm-*.joblib")))["model"]
    assert all(torch.equal(p, q) for p, q in zip(default.module_.parameters(), gm.module_.parameters()))
    # two L-inf teachers at the training eps 0.2: the union of their threat models is the worst case at 0.2
    cell = {(r["method"], r["attack"], r["eps"]): r for r in first["results"]}
    for m in METHODS:
        assert cell[(m, "union", None)]["accuracy"] == cell[(m, "worst_case", 0.2)]["accuracy"]
        assert cell[(m, "union", None)]["threat_model"] == "fgsm@0.2+pgd@0.2"
    assert first["union"] == [["fgsm", 0.2], ["pgd", 0.2]]
    diag = first["diagnostics"]
    assert diag["models"] == ["teacher_fgsm", "teacher_pgd"] + [m for m in METHODS if m.startswith(("kd", "mtkd"))]
    assert 0 <= diag["all_agree"] <= 1 and len(diag["gradient_cosine"]) == len(diag["models"])
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == len(expected) and set(rows[0]) == {"method", "attack", "eps", "accuracy", "n_samples",
                                                           "threat_model"}
    assert len(first["teacher_weights"]["mtkd_adaptive"]) == 1  # one epoch, two teachers
    assert len(first["teacher_weights"]["mtkd_adaptive"][0]) == 2

    assert main(TINY + ["--out", str(out)]) == 0
    second = json.loads((out / "results.json").read_text())
    assert all(second["reused"].values())
    assert second["results"] == first["results"]
    prov = first["provenance"]
    assert prov["versions"]["torch"] and set(prov["versions"]) >= {"robustkd", "advertorch", "skorch"}
    assert prov["attacks"]["pgd"]["implementation"] == "robustkd.attacks._advertorch.SeededStartLinfPGD"
    assert "eps=0.1, nb_iter=10" in prov["attacks"]["pgd"]["parameters_at_first_eps"]
    assert set(prov["attacks"]) == {"fgsm", "pgd"}
    fit_times = {m: t for m, t in first["timings"].items() if not m.startswith("eval_")}
    assert set(fit_times) == set(METHODS) and all(t > 0 for t in fit_times.values())
    assert {m: second["timings"][m] for m in fit_times} == fit_times, "a re-run keeps the recorded fit times"
    assert second["timings"] == first["timings"], "and the finished evaluations, with their times"
    assert len(list((out / "evaluations").glob("*.json"))) == len(METHODS)
    # other evaluation settings evaluate again (the models are reused)
    assert main([a if a != "0.1,0.2" else "0.2" for a in TINY] + ["--out", str(out)]) == 0
    third = json.loads((out / "results.json").read_text())
    assert all(third["reused"].values()) and {r["eps"] for r in third["results"]} == {0.0, 0.2, None}
    assert len(list((out / "evaluations").glob("*.json"))) == 2 * len(METHODS)


def test_protocols_fill_only_the_unset_fields():
    from robustkd.experiments import PROTOCOLS, ExperimentConfig

    fashion = ExperimentConfig(dataset="fashion-mnist").resolved()
    assert (fashion.n_train, fashion.n_test, fashion.epochs, fashion.attacks, fashion.train_eps) == (
        None, None, 10, ("fgsm", "fgsm_rs", "nfgsm"), 0.1)
    assert (fashion.lr_schedule, fashion.valid_size, fashion.autoattack_n_test, fashion.eval_attacks) == (
        "onecycle", 1000, 1000, ("fgsm", "pgd"))
    mine = ExperimentConfig(dataset="fashion-mnist", epochs=3, autoattack_n_test=0, lr_schedule="constant").resolved()
    assert (mine.epochs, mine.autoattack_n_test, mine.lr_schedule, mine.lr) == (3, 0, "constant", 0.004)
    digits = ExperimentConfig().resolved()
    assert {k: getattr(digits, k) for k in PROTOCOLS["digits"]} == PROTOCOLS["digits"]
    assert digits.epochs == 15 and digits.attacks == ("fgsm", "pgd", "mim") and digits.lr_schedule == "constant"
    assert ExperimentConfig(dataset="fashion-mnist").check().epochs is None, "check leaves unset fields unset"


def test_reproduce_with_fast_teachers_a_one_cycle_schedule_and_robust_selection(tmp_path):
    import json

    import joblib

    out = tmp_path / "out"
    argv = [a for a in TINY if a not in ("--epochs", "1")] + [
        "--epochs", "2", "--attacks", "fgsm_rs,nfgsm", "--lr-schedule", "onecycle", "--lr", "0.003",
        "--valid-size", "40", "--student-attack", "fgsm_rs", "--no-adversarial-student", "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "results.json").read_text())
    assert summary["config"]["valid_size"] == 40 and summary["config"]["lr_schedule"] == "onecycle"
    assert summary["teacher_names"] == ["fgsm_rs", "nfgsm"]
    pool = joblib.load(next((out / "models").glob("teachers-*.joblib")))["model"]
    for teacher in pool.teachers_:
        history = teacher.history
        assert len(history[:, "valid_robust_acc"]) == 2 and history[-1, "lr"] == pytest.approx(0.003 * 0.125 / 0.6)
        trained = sum(b["train_batch_size"] for b in history[0]["batches"] if "train_batch_size" in b)
        assert trained == 200, "240 training images, 40 held out for the robust selection"


def test_reproduce_with_few_labels_marks_the_rest_unlabeled(tmp_path):
    import json

    import joblib

    out = tmp_path / "out"
    assert main(TINY + ["--labeled", "60", "--no-adversarial-student", "--out", str(out)]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert summary["config"]["labeled"] == 60
    extra = ["mtkd_default_labeled", "teacher_rst_fgsm", "teacher_rst_pgd", "mtkd_default_rst"]
    assert summary["methods"] == METHODS[:-1] + extra
    saved = {p.name.split("-")[0]: joblib.load(p)["model"] for p in (out / "models").glob("*.joblib")}

    def trained_on(model):     # images seen in the first epoch
        return sum(b["train_batch_size"] for b in model.history[0]["batches"] if "train_batch_size" in b)
    assert trained_on(saved["standard"]) == 60, "the standard model trains on the labeled images only"
    assert all(trained_on(t) == 60 for t in saved["teachers"].teachers_), "so do the teachers"
    assert trained_on(saved["mtkd_default"]) == 240, "the students see every image"
    assert trained_on(saved["mtkd_default_labeled"]) == 60
    rst = saved["teachers_rst"].teachers_
    assert all(trained_on(t) == 240 and t.pseudo_labeler is not None for t in rst), "self-training: all of them"
    assert main(TINY + ["--labeled", "5", "--out", str(tmp_path / "bad")]) == 2


def test_reproduce_prints_one_table_per_attack(tmp_path, capsys):
    argv = [a for a in TINY if a != "--quiet"] + ["--out", str(tmp_path), "--no-adversarial-student"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for attack in ("fgsm", "pgd", "worst_case"):
        assert f"\n{attack}\n" in out
    table = out.split("\nworst_case\n")[1].splitlines()
    assert table[0].split() == ["method", "clean", "eps=0.1", "eps=0.2"]
    assert [line.split()[0] for line in table[1:len(METHODS)]] == METHODS[:-1]


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "--dataset", "cifar10"], "invalid choice: 'cifar10'"),
    (["reproduce", "--attacks", "fgsm,xyz"], "unknown attack(s) ['xyz'] in --attacks"),
    (["reproduce", "--eval-attacks", "zzz"], "unknown attack(s) ['zzz'] in --eval-attacks"),
    (["reproduce", "--eps", "-0.1"], "eps values must be finite and > 0"),
    (["reproduce", "--train-eps", "0"], "eps values must be finite and > 0"),
    (["reproduce", "--scheme", "best"], "--scheme must be one of"),
    (["reproduce", "--device", "gpu"], "invalid device 'gpu'; choose cpu, cuda, cuda:<index> or auto"),
    (["reproduce", "--alpha", "2"], "--alpha must be in [0, 1]"),
    (["reproduce", "--teachers", "fgsm,pgd_l2:big"], "--attacks: a teacher is attack or attack:eps"),
    (["reproduce", "--teachers", "pgd_l2:0"], "--attacks: a teacher's eps must be finite and > 0"),
    (["reproduce", "--gradient-matching", "-1"], "--gradient-matching must be finite and >= 0"),
    (["reproduce", "--feature-matching", "on"], "expected auto or a number; got 'on'"),
    (["reproduce", "--feature-matching", "-1"], "--feature-matching must be 'auto' or a finite number >= 0; got -1.0"),
    (["reproduce", "--student-channels", "8"], "--student-channels must be two integers >= 1 (the channels of the "
                                               "two conv blocks); got [8]"),
    (["reproduce", "--student-channels", "8,0"], "--student-channels must be two integers >= 1"),
    (["reproduce", "--student-channels", "8,x"], "expected comma-separated integers; got '8,x'"),
    (["reproduce", "--student-hidden", "0"], "--student-hidden must be >= 1; got 0"),
])
def test_reproduce_rejects_bad_arguments_on_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err.splitlines()[-1]


def test_reproduce_with_a_smaller_student_adds_its_direct_adversarial_training(tmp_path):
    import json

    import joblib

    out = tmp_path / "out"
    argv = TINY + ["--out", str(out), "--gradient-matching", "0", "--no-adversarial-student",
                   "--student-channels", "4,8", "--student-hidden", "16"]
    assert main(argv) == 0
    summary = json.loads((out / "results.json").read_text())
    students = ["kd_fgsm", "kd_pgd", "mtkd_uniform", "mtkd_adaptive"]
    assert summary["methods"] == ["standard", "teacher_fgsm", "teacher_pgd"] + students + ["direct_pgd"]
    params = summary["parameters"]
    # digits 8x8: the teachers' SmallCNN has 53,002 parameters; 4,8 channels and 16 hidden: 1,004
    assert params["teacher_pgd"] == 53002 and params["standard"] == 53002
    assert {params[m] for m in students + ["direct_pgd"]} == {4 * 9 + 4 + 8 * 36 + 8 + 32 * 16 + 16 + 170}
    direct = joblib.load(next((out / "models").glob("direct_pgd-*.joblib")))["model"]
    assert direct.attack == "pgd" and direct.eps == summary["config"]["train_eps"]
    assert direct.module_.features[3].out_channels == 8 and direct.module_.classifier[1].out_features == 16
    cells = {(r["method"], r["attack"], r["eps"]) for r in summary["results"]}
    assert ("direct_pgd", "pgd", 0.2) in cells and ("direct_pgd", "clean", 0.0) in cells
    # the teachers' size is the default: no direct row, and the students' model files are those of a default run
    same = json.loads((out / "results.json").read_text()) if main(
        [a for a in argv if a not in ("--student-channels", "4,8", "--student-hidden", "16")] +
        ["--student-channels", "32,64"]) == 0 else None
    assert "direct_pgd" not in same["methods"] and same["parameters"]["mtkd_uniform"] == 53002
    assert same["reused"]["teacher_pgd"] and not same["reused"]["mtkd_uniform"]


def test_reproduce_without_data_is_one_line(tmp_path, capsys):
    assert main(["reproduce", "--dataset", "fashion-mnist", "--data-home", str(tmp_path), "--quiet",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "FashionMNIST not found" in err[0] and "--download" in err[0]


def test_an_argument_error_prints_the_subcommands_usage(capsys):
    with pytest.raises(SystemExit):
        main(["reproduce", "--scheme", "best"])
    assert capsys.readouterr().err.startswith("usage: robustkd reproduce")


def test_help_and_argument_errors_do_not_import_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom robustkd.cli import main\n"
            "for argv in (['--help'], ['reproduce', '--help'], ['reproduce', '--attacks', 'nope']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('torch', 'skorch', 'advertorch', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_help_shows_every_option_with_its_default_and_plain_text(capsys):
    import re

    from robustkd.cli import build_parser

    parser = build_parser()
    for sub in ("evaluate", "reproduce"):
        with pytest.raises(SystemExit):
            parser.parse_args([sub, "--help"])
        text = capsys.readouterr().out
        assert "``" not in text and ":class:" not in text and ":func:" not in text
        options = re.findall(r"^  (--[a-z-]+)", text, re.M)
        assert len(options) >= 10
    flat = " ".join(text.split())
    assert "(default per data set, digits: fgsm,pgd,mim; mnist: fgsm,pgd,mim; fashion-mnist: fgsm,fgsm_rs,nfgsm)" \
        in flat and "digits: 0.2; mnist: 0.2; fashion-mnist: 0.1)" in flat and "or auto" in flat


def test_cli_names_match_the_registries():
    from robustkd._names import ATTACKS, SCHEMES
    from robustkd.attacks import available_attacks
    from robustkd.weighting import teacher_weights

    assert set(ATTACKS) <= set(available_attacks())   # user code may register more (tests/test_registries.py)
    assert list(available_attacks())[:len(ATTACKS)] == list(ATTACKS)
    torch = __import__("torch")
    for scheme in SCHEMES:
        teacher_weights(torch.zeros(2, 2, 3), torch.zeros(2, dtype=int), scheme, student_logits=torch.zeros(2, 3))


def test_evaluate_takes_the_number_of_classes_from_the_dataset_not_the_subsample(capsys):
    assert main(["evaluate", "--n-train", "5", "--n-test", "20", "--epochs", "1", "--attacks", "fgsm", "--eps",
                 "0.1", "--no-autoattack", "--quiet"]) == 0


def test_reproduce_prints_titles_and_a_legend(tmp_path, capsys):
    argv = [a for a in TINY if a != "--quiet"] + ["--out", str(tmp_path), "--no-adversarial-student"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "Accuracy on 60 test images" in captured.out and "Methods: standard: no defence" in captured.out
    assert "mtkd_adaptive: MTKD-AR student, per-input weights (confidence)" in captured.out
    epochs = [line for line in captured.err.splitlines() if " epoch 1/1 loss " in line]
    assert {line.split()[0] for line in epochs} >= {"standard", "teacher_fgsm", "teacher_pgd", "kd_pgd"}


def test_the_legend_names_the_default_students_terms_as_the_run_trained_them():
    from robustkd._cli_output import method_legend

    def default_entry(**config):
        legend = method_legend({"scheme": "confidence", **config})
        return legend.split("mtkd_default: ")[1].split(" | ")[0]

    assert default_entry(gradient_matching=2.0, feature_matching=10.0) == (
        "robustkd's default (equal weights, input-gradient matching, feature matching), clean data")
    assert default_entry(gradient_matching=2.0, feature_matching=0.0) == (
        "robustkd's default (equal weights, input-gradient matching), clean data")
    assert default_entry(gradient_matching=0.0, feature_matching=0.0) == "robustkd's default (equal weights), clean data"


def test_ctrl_c_stops_reproduce_and_a_rerun_matches_an_uninterrupted_run(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    import joblib

    argv = ["reproduce", "--epochs", "2", "--n-train", "200", "--n-test", "60", "--attacks", "fgsm,pgd",
            "--eval-attacks", "fgsm,pgd", "--no-autoattack", "--eps", "0.1", "--no-adversarial-student"]
    out = tmp_path / "interrupted"
    # the child must not inherit an ignored SIGINT (pytest started in the background): Python then installs
    # its own handler at start-up, as in a terminal
    proc = subprocess.Popen([sys.executable, "-m", "robustkd", *argv, "--out", str(out)], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = ""
    while "teacher_fgsm epoch 1/2" not in seen:          # interrupt while the teachers train
        line = proc.stderr.readline()
        assert line, f"the run ended before it could be interrupted: {seen}"
        seen += line
    proc.send_signal(signal.SIGINT)
    start = time.perf_counter()
    err = proc.communicate(timeout=30)[1]
    assert proc.returncode == 130 and time.perf_counter() - start < 10
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("robustkd: interrupted")
    saved = sorted(p.name.split("-")[0] for p in (out / "models").iterdir())
    assert saved == ["standard"], saved                  # the half-trained teacher pool was not saved
    for path in (out / "models").iterdir():
        assert len(joblib.load(path)["model"].history) == 2

    assert main(argv + ["--quiet", "--out", str(out)]) == 0
    assert main(argv + ["--quiet", "--out", str(tmp_path / "fresh")]) == 0
    assert (out / "results.csv").read_text() == (tmp_path / "fresh" / "results.csv").read_text()


def test_autoattack_on_a_test_subset_keeps_every_other_attack_on_all_images(standard_net, digits):
    from robustkd import robustness_report
    from robustkd.experiments import ExperimentConfig
    from robustkd.experiments.runner import _report, eval_attacks, provenance

    _, X_test, _, y_test = digits
    X, y = X_test[:60], y_test[:60]
    fast = {"n_iter": 5, "n_target_classes": 2, "n_queries": 50}

    def report(model, X, y, attacks, **kwargs):  # AutoAttack with a small budget, to keep the test fast
        params = {"autoattack": fast} if "autoattack" in attacks else None
        return robustness_report(model, X, y, attacks=attacks, attack_params=params, **kwargs)

    cfg = ExperimentConfig(eval_attacks=("fgsm", "pgd"), eps=(0.1, 0.2), autoattack_n_test=20)
    assert eval_attacks(cfg) == ["fgsm", "pgd", "autoattack"]
    rows = _report(report, standard_net, X, y, cfg)
    assert [(r["attack"], r["eps"]) for r in rows] == [("clean", 0.0)] + [
        (a, e) for e in (0.1, 0.2) for a in ("fgsm", "pgd", "autoattack", "worst_case")]
    n = {r["attack"]: r["n_samples"] for r in rows}
    assert n == {"clean": 60, "fgsm": 60, "pgd": 60, "autoattack": 20, "worst_case": 20}
    full = report(standard_net, X, y, ["fgsm", "pgd"], eps=[0.1, 0.2], random_state=0, checks=None)
    sub = report(standard_net, X[:20], y[:20], ["fgsm", "pgd", "autoattack"], eps=[0.1, 0.2], random_state=0,
                 checks=None)
    expected = {(r["attack"], r["eps"]): r["accuracy"] for r in full if r["attack"] != "worst_case"}
    expected.update({(r["attack"], r["eps"]): r["accuracy"] for r in sub
                     if r["attack"] in ("autoattack", "worst_case")})
    assert {(r["attack"], r["eps"]): r["accuracy"] for r in rows} == expected
    # without the subset (or with one as large as the test set) everything runs on every image
    for cfg in (ExperimentConfig(eval_attacks=("fgsm",), eps=(0.1,)),
                ExperimentConfig(eval_attacks=("fgsm",), eps=(0.1,), autoattack_n_test=600)):
        assert {r["n_samples"] for r in _report(report, standard_net, X, y, cfg)} == {60}
    cfg = ExperimentConfig(eval_attacks=("fgsm",), eps=(0.1,), autoattack=False)
    assert [r["attack"] for r in _report(report, standard_net, X, y, cfg)] == ["clean", "fgsm", "worst_case"]
    described = provenance(["pgd", "autoattack"], standard_net.module_, 0.1)["attacks"]["autoattack"]
    assert described["implementation"] == "robustkd.attacks._autoattack.Cascade"
    assert "n_queries=5000" in described["parameters_at_first_eps"] and "n_iter=100" in described[
        "parameters_at_first_eps"]


def test_a_valid_size_that_leaves_no_training_data_is_one_line_before_any_training(tmp_path, capsys):
    argv = ["reproduce", "--n-train", "50", "--valid-size", "45", "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["robustkd: error: valid_size must leave training images on both sides: between 10 and 40 for 50 "
                   "training images and 10 classes (0: no robust selection); got valid_size=45"]
    assert not list((tmp_path / "models").glob("*.joblib"))


def test_reproduce_with_a_mixed_norm_pool_scores_the_union_of_threat_models(tmp_path, capsys):
    import json

    out = tmp_path / "mixed"
    argv = ["reproduce", "--n-train", "240", "--n-test", "60", "--epochs", "1", "--teachers", "fgsm,pgd_l2:1.0",
            "--eval-attacks", "fgsm,pgd", "--no-autoattack", "--eps", "0.1,0.2", "--no-adversarial-student",
            "--gradient-matching", "0", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "results.json").read_text())
    assert summary["teacher_names"] == ["fgsm", "pgd_l2@1"]
    assert summary["methods"] == ["standard", "teacher_fgsm", "teacher_pgd_l2@1", "kd_fgsm", "kd_pgd_l2@1",
                                  "mtkd_uniform", "mtkd_adaptive"], "no gradient-matching students with weight 0"
    assert summary["union"] == [["fgsm", 0.2], ["pgd", 0.2], ["apgd_l2", 1.0]]
    union = {r["method"]: r for r in summary["results"] if r["attack"] == "union"}
    worst = {r["method"]: r["accuracy"] for r in summary["results"] if r["attack"] == "worst_case" and r["eps"] == 0.2}
    assert set(union) == set(summary["methods"])
    assert all(union[m]["accuracy"] <= worst[m] for m in union), "the L2 attack can only take more samples"
    assert union["mtkd_uniform"]["threat_model"] == "fgsm@0.2+pgd@0.2+apgd_l2@1"
    assert "union of the teachers' threat models: fgsm@0.2+pgd@0.2+apgd_l2@1" in printed
    assert "mean input-gradient cosine" in printed


def test_the_tradeoff_figure_reads_autoattack_at_the_training_eps_and_draws_the_frontier():
    from robustkd.experiments.plots import frontier, tradeoff_points

    rows = [dict(method=m, attack=a, eps=e, accuracy=acc) for m, a, e, acc in [
        ("standard", "clean", 0.0, 0.97), ("standard", "autoattack", 0.2, 0.01), ("standard", "autoattack", 0.1, 0.5),
        ("teacher_pgd", "clean", 0.0, 0.93), ("teacher_pgd", "autoattack", 0.2, 0.30),
        ("kd_pgd", "clean", 0.0, 0.92), ("kd_pgd", "autoattack", 0.2, 0.10),        # beaten on both counts
        ("mtkd_adversarial", "clean", 0.0, 0.90), ("mtkd_adversarial", "autoattack", 0.2, 0.31)]]
    summary = {"results": rows, "config": {"train_eps": 0.2}, "methods": ["standard", "teacher_pgd", "kd_pgd",
                                                                           "mtkd_adversarial"],
               "timings": {"standard": 2.0, "teacher_pgd": 9.0}}
    points, attack = tradeoff_points(summary)
    assert attack == "autoattack"
    assert points == [("standard", "baseline", 0.97, 0.01, 2.0), ("teacher_pgd", "teachers", 0.93, 0.30, 9.0),
                      ("kd_pgd", "single-teacher students", 0.92, 0.10, None),
                      ("mtkd_adversarial", "adversarial-input student", 0.90, 0.31, None)]
    assert [p[0] for p in frontier(points)] == ["standard", "teacher_pgd", "mtkd_adversarial"]
    worst = [dict(r, attack="worst_case") if r["attack"] == "autoattack" else r for r in rows]
    assert tradeoff_points(dict(summary, results=worst))[1] == "worst_case"
    # teachers trained at an eps the grid lacks: the nearest eps of the grid (0.2 for 0.25)
    assert tradeoff_points(dict(summary, config={"train_eps": 0.25}))[0] == points

