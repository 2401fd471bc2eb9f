import csv

import pytest

from robustkd.cli import main


def test_evaluate_prints_a_full_table_and_writes_csv(tmp_path, capsys):
    out = tmp_path / "r.csv"
    rc = main(["evaluate", "--epochs", "2", "--attacks", "fgsm,pgd", "--eps", "0.1,0.3", "--n-test", "60",
               "--quiet", "--csv", str(out)])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["attack", "eps=0.1", "eps=0.3"]
    assert [line.split()[0] for line in lines[2:]] == ["clean", "fgsm", "pgd", "worst_case"]
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1 + 2 * 3 and {r["n_samples"] for r in rows} == {"60"}


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--dataset", "cifar"], "invalid choice: 'cifar'"),
    (["evaluate", "--attacks", "pgd,foo"], "unknown attack(s) ['foo']"),
    (["evaluate", "--eps", "0,0.1"], "eps values must be finite and > 0"),
    (["evaluate", "--epochs", "0"], "--epochs must be >= 1"),
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
