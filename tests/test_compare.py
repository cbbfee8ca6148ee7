"""neuroplastic compare: the paired statistics by hand, and the command end to end on the embedded digits."""

import math
import subprocess
import sys

import pytest

from neuroplastic.bench import compare


def test_sign_flip_p_and_paired_stats_by_hand():
    # d = [1, 2, 3]: only the all-plus and all-minus patterns reach |mean| = 2 -> p = 2/8
    assert compare.sign_flip_p([1.0, 2.0, 3.0]) == 0.25
    assert compare.sign_flip_p([1.0, -1.0]) == 1.0
    rows = [{"config": {"learner": ln, "seed": s}, "status": "done", "metrics": {"test_acc": acc}}
            for ln, s, acc in (("a", 0, 0.90), ("b", 0, 0.92), ("a", 1, 0.80), ("b", 1, 0.83), ("a", 2, 0.5),
                               ("b", 2, 0.51), ("a", 3, 0.7))]  # seed 3 of b missing: not paired
    st = compare.paired(rows, "a", "b")
    assert st["seeds"] == [0, 1, 2]
    assert st["diff"] == pytest.approx([0.02, 0.03, 0.01])
    assert st["mean_diff"] == pytest.approx(0.02) and st["std_diff"] == pytest.approx(0.01)
    assert st["t"] == pytest.approx(0.02 / (0.01 / math.sqrt(3)))
    head, cells = compare.paired_table(st, "a", "b")
    assert head[-1] == "b - a (points)" and cells[-1][0] == "mean (n=3)" and "p = 0.25" in cells[-1][-1]
    with pytest.raises(ValueError, match="two different learners"):
        compare.compare_suite("bp", "bp", dataset="digits")


def test_compare_command_runs_both_learners_on_shared_seeds(tmp_path):
    r = subprocess.run([sys.executable, "-m", "neuroplastic.cli", "compare", "bp", "fa", "--preset", "mlp",
                        "--epochs", "1", "--seeds", "0", "1", "--jobs", "1", "--threads", "1", "--db",
                        str(tmp_path / "db.sqlite"), "--results-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert "mean (n=2)" in r.stdout and "sign-flip p" in r.stdout
    out = tmp_path / "compare" / "compare-bp-vs-fa-digits-mlp"
    assert (out / "compare.md").is_file() and (out / "curves.png").is_file()


def test_compare_refuses_two_networks_and_takes_keys_of_one_side():
    """DLL's default MLP and backprop's are different networks: refused with both named. DLL's preset and backprop's
    arch of one net, given per side, are accepted; a run setting only one learner's defaults fix is listed."""
    with pytest.raises(ValueError, match=r"dll would train mlp\(act=tanh, hidden=1024-512-256\) and bp mlp\(act=relu"):
        compare.compare_suite("dll", "bp", dataset="digits")
    with pytest.raises(ValueError, match="lv_cnn_cifar"):
        compare.compare_suite("dll", "bp", dataset="cifar-10", only_a={"preset": "cnn-cifar"},
                              only_b={"params": {"arch": "lv_cnn_cifar", "act": "relu"}})
    s = compare.compare_suite("dll", "bp", dataset="cifar-10", seeds=[0, 1], only_a={"preset": "cnn-cifar"},
                              only_b={"params": {"arch": "lv_cnn_cifar"}})
    assert sorted(cfg["learner"] for _h, cfg in s.runs) == ["bp", "bp", "dll", "dll"]
    assert compare.run_differences(s) == []  # DLL's CNN preset batch size, 64, is the generic default too
    s = compare.compare_suite("dll", "bp", dataset="digits", only_a={"preset": "mlp-small"},
                              only_b={"params": {"arch": "mlp", "hidden": [128, 64], "act": "tanh"}})
    assert compare.run_differences(s) == ["batch_size (dll: 32, bp: 64)"]
    assert compare.run_differences(compare.compare_suite("bp", "fa", dataset="digits")) == []
    with pytest.raises(ValueError, match="--set-b cannot set epochs, seed"):
        compare.compare_suite("bp", "fa", dataset="digits", only_b={"seed": 5, "epochs": 3})
