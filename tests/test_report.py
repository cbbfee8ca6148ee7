"""The decision report: one ranking row per learner that ran and none for the others, a failed learner shown as
failed, energy columns from the stored counts, label efficiency, the reproduction table read only from its data
file, imported records, and a self-contained HTML page."""

import html.parser
import io
import re

import pytest

from neuroplastic import learners
from neuroplastic.bench import papers, report, runner, suite
from neuroplastic.bench.db import ResultsDB
from neuroplastic.energy import EnergyModel

TINY = {"dataset": "digits", "epochs": 1, "batch_size": 64, "val": 0.1}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("store")
    spec = {"name": "decide", "cells": [
        {"learner": "bp", "params": {"arch": "mlp", "hidden": [16]}},
        {"learner": "bp", "params": {"arch": "mlp", "hidden": [8]}},
        {"learner": "fa", "params": {"arch": "mlp", "hidden": [16]}},
        {"learner": "fa", "dataset": "mnist", "params": {"arch": "mlp", "hidden": [16]}},  # no MNIST here: fails
        {"learner": "dbn", "params": {"layers": [16]}, "protocol": {"probe": {"epochs": 1},
                                                                    "labels_per_class": [1, 5, "all"]}}],
        "grid": {"seed": [0, 1]}, "base": TINY}
    import os

    old = os.environ.get("NEUROPLASTIC_DATA")
    os.environ["NEUROPLASTIC_DATA"] = str(tmp / "no-data")
    try:
        runner.run_suite(suite.expand(spec), db_path=tmp / "r.db", results_dir=tmp / "res", command="test",
                         out=io.StringIO(), threads=1, jobs=1, report=False, max_attempts=1)
    finally:
        if old is None:
            os.environ.pop("NEUROPLASTIC_DATA")
        else:
            os.environ["NEUROPLASTIC_DATA"] = old
    return tmp / "r.db"


def _groups(db_path):
    db = ResultsDB(db_path)
    rows = db.runs()
    db.close()
    return rows, report.summarize(rows)


def test_one_ranking_row_per_learner_that_ran_and_failed_learners_shown_failed(store):
    _rows, groups = _groups(store)
    tables = report.decision_rows(groups)
    assert set(tables) == {"digits", "mnist"}
    head, cells = tables["digits"]
    learners_listed = [report._text(c[1]) for c in cells]
    assert sorted(learners_listed) == ["bp", "dbn", "fa"]  # once each, though bp ran in two configurations
    accs = [float(c[3].split()[0]) for c in cells]
    assert accs == sorted(accs, reverse=True) and [c[0] for c in cells] == ["1", "2", "3"]
    by = {report._text(c[1]): dict(zip(head, c)) for c in cells}
    assert by["bp"]["vs backprop (pp)"] == "reference" and by["fa"]["vs backprop (pp)"] not in ("—", "reference")
    assert by["dbn"]["read out"] == "linear probe" and by["fa"]["read out"] == "end to end"
    assert by["fa"]["C1 C2 C3"] == "✓ ✘ ✘"
    # the bp configuration shown is the one with the better validation accuracy, not the better test accuracy
    bp = [g for g in groups if g["learner"] == "bp"]
    val = lambda g: report._mean_of(g["rows"], "val_acc")
    chosen = max(bp, key=val)
    assert by["bp"]["test acc % (mean ± std)"] == report.fmt_acc(chosen["acc_mean"], chosen["acc_std"])
    _, mnist = tables["mnist"]
    assert mnist == [["—", "fa", "", "failed", "0 (2 failed)", "—", "", "", "", "", "", "", "", ""]]


def test_energy_columns_come_from_the_stored_counts_under_any_figures(store):
    rows, groups = _groups(store)
    head, cells = report.decision_rows(groups)["digits"]
    by = {report._text(c[1]): dict(zip(head, c)) for c in cells}
    fa_rows = [r for r in rows if r["config"]["learner"] == "fa" and r["status"] == "done"]
    mac = sum(r["metrics"]["ops_inference_mac"] for r in fa_rows) / len(fa_rows)
    assert mac == 64 * 16 + 16 * 10
    assert float(by["fa"]["nJ / inference"]) == pytest.approx(mac * (4.6 + 5.0) / 1e3, abs=0.05)
    cheap = report.decision_rows(groups, EnergyModel(mac_pj=1.0, ac_pj=1.0, read_pj=0.0))["digits"]
    by2 = {report._text(c[1]): dict(zip(head, c)) for c in cheap[1]}
    assert float(by2["fa"]["nJ / inference"]) == pytest.approx(mac / 1e3, abs=0.05)


def test_reproduction_table_reads_the_papers_numbers_only_from_its_data_file(store, tmp_path):
    _, groups = _groups(store)
    f = tmp_path / "claims.yaml"
    f.write_text("claims:\n"
                 "  - {paper: P1, claim: fa on digits, value: 12.5, where: {learner: fa, dataset: digits}}\n"
                 "  - {paper: P2, claim: never run, value: 99.0, where: {learner: sal, dataset: cifar-10}}\n")
    head, cells = papers.reproduction_rows(groups, papers.load_claims(f))
    fa = dict(zip(head, cells[0]))
    assert fa["paper's value"] == "12.5%" and fa["seeds"] == "2"
    ours = float(fa["ours (mean ± std)"].split()[0].rstrip("%"))
    assert float(fa["ours − paper"]) == pytest.approx(ours - 12.5, abs=0.01)
    assert cells[1][3] == "not run"
    f.write_text(f.read_text().replace("12.5", "50"))  # change the file: the table follows it
    assert papers.reproduction_rows(groups, papers.load_claims(f))[1][0][2] == "50%"
    packaged = papers.load_claims()
    assert len(packaged) >= 10 and all({"paper", "claim", "value", "where"} <= set(c) for c in packaged)
    f.write_text("claims:\n  - {paper: P, value: 1}\n")
    with pytest.raises(Exception, match="claim 1 needs"):
        papers.load_claims(f)


def test_label_efficiency_figure_per_dataset(store):
    rows, _ = _groups(store)
    figs = report.label_efficiency_figures(rows)
    assert [f[0] for f in figs] == ["labels-digits"] and figs[0][2][:4] == b"\x89PNG"


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.srcs, self.ids, self.hrefs, self.errors = [], [], set(), [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.srcs.append(a.get("src", ""))
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if "id" in a:
            self.ids.add(a["id"])
        if tag not in ("img", "meta", "br"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()


def test_html_is_well_formed_self_contained_with_the_headline_first(store, tmp_path):
    report.write_report(store, tmp_path / "rep", ("md", "html"))
    doc = (tmp_path / "rep" / "report.html").read_text()
    p = _Page()
    p.feed(doc)
    assert not p.errors and p.stack == []
    assert p.srcs and all(s.startswith("data:image/png;base64,") for s in p.srcs)  # every image embedded
    assert not re.search(r"(src|href)=\"(https?:)?//", doc)  # opens offline: nothing external
    assert all(h.startswith("#") and h[1:] in p.ids for h in p.hrefs)  # row links reach the run's pictures
    order = [doc.index(t) for t in ("comparison that decides", "Label efficiency", "Every configuration",
                                    "Pictures of trained learners")]
    assert order == sorted(order)
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "### digits" in md and "labels-digits.png" in md


def test_imported_records_join_the_report_without_duplicating_runs(store, tmp_path):
    import shutil

    db_path = tmp_path / "copy.db"
    shutil.copy(store, db_path)
    db = ResultsDB(db_path)
    runs = db.runs()
    done = next(r for r in runs if r["status"] == "done" and r["config"]["learner"] == "bp")
    db.import_records("old", [done["record"],  # the same run again: not counted twice
                              {"learner": "kp", "dataset": "digits", "preset": "mlp", "seed": 0, "test_acc": 0.5,
                               "val_acc": 0.5, "status": "done"},
                              {"learner": "kp", "dataset": "digits", "preset": "mlp", "seed": 0, "test_acc": 0.2,
                               "labels_per_class": 1, "status": "done"}])
    extra = report.imported_rows(db, {r["hash"] for r in runs})
    db.close()
    assert len(extra) == 1 and extra[0]["config"]["learner"] == "kp" and len(extra[0]["records"]) == 2
    _head, cells = report.decision_rows(report.summarize(runs + extra))["digits"]
    assert [report._text(c[1]) for c in cells].count("kp") == 1
    report.write_report(db_path, tmp_path / "rep", ("md",))
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| kp |" in md
    counts = ", ".join(f"{sum(r['status'] == k for r in runs)} {k}" for k in ("done", "failed"))
    assert f"- **runs**: {counts} in this store; 1 imported (2 records)" in md.replace("\\", "")  # both kinds
    report.write_report(db_path, tmp_path / "rep2", ("md",), imported=False)
    assert "| kp |" not in (tmp_path / "rep2" / "report.md").read_text()


def _run(params, seed, acc, angle):
    cfg = {"learner": "fa", "dataset": "digits", "epochs": 1, "seed": seed, "params": params}
    return {"hash": f"{params}-{seed}", "status": "done", "config": cfg, "history": [],
            "metrics": {"test_acc": acc, "angle_deg/1": angle}}


def test_sweeps_find_a_one_parameter_series_with_the_default_cell_at_its_default_value():
    rows = [_run({"lr": lr}, s, 0.5 + lr + s / 100, 40 + 10 * lr) for lr in (0.1, 0.2, 0.3) for s in (0, 1)]
    rows += [_run({}, 0, 0.4, 80.0)]  # leaves lr out: runs at fa's default
    rows += [_run({"lr": 0.1, "hidden": [8]}, 0, 0.9, 30.0)]  # differs in a second key: no series of its own
    sw = report.sweeps(report.summarize(rows))
    defaults = learners.param_defaults("fa")
    default = defaults["lr"]
    assert default not in (0.1, 0.2, 0.3)
    hidden = report._short(defaults["hidden"])
    assert [s["key"] for s in sw] == ["params.lr"] and sw[0]["fixed"] == f"params.hidden={hidden}"
    assert sw[0]["label"] == ""  # hidden at fa's default: the title names only what the series sets
    pts = sw[0]["points"]
    assert list(pts) == sorted([default, 0.1, 0.2, 0.3])
    assert [m["test_acc"] for m in pts[0.2]] == [0.7, 0.71] and [m["angle_deg/1"] for m in pts[default]] == [80.0]
    figs = report.sweep_figures(report.summarize(rows))
    assert len(figs) == 1 and figs[0][0].startswith("sweep-digits-fa-params.lr") and figs[0][2][:4] == b"\x89PNG"
    assert report.sweeps(report.summarize(rows[:4] + rows[-1:])) == []  # two values of lr: too few for a series


def test_the_decision_table_names_what_a_configuration_sets_not_what_it_lacks():
    """Groups of one learner and net are told apart by the differing keys each group sets (a key a group lacks is
    not written as ``=None``), in the decision table and the other tables alike."""
    rows = [_run({"lr": 0.1, "conv_mode": "fa"}, 0, 0.9, 10.0), _run({"lr": 0.2}, 0, 0.5, 10.0)]
    for r in rows:
        r["metrics"]["val_acc"] = r["metrics"]["test_acc"]
    groups = report.summarize(rows)
    assert sorted(g["variant"] for g in groups) == ["params.conv_mode=fa, params.lr=0.1", "params.lr=0.2"]
    [row] = report.decision_rows(groups)["digits"][1]
    assert row[2] == "default (params.conv_mode=fa, params.lr=0.1)"
    rows[0]["metrics"].update(val_acc=0.1)  # chosen by validation: the group without conv_mode
    [row] = report.decision_rows(report.summarize(rows))["digits"][1]
    assert row[2] == "default (params.lr=0.2)"


def _net_run(learner, epochs, acc, seed=0, preset=None, **params):
    cfg = {"learner": learner, "dataset": "cifar-10", "epochs": epochs, "seed": seed, "params": params}
    if preset:
        cfg["preset"] = preset
    return {"hash": f"{learner}-{epochs}-{params}-{preset}-{seed}", "status": "done", "config": cfg, "history": [],
            "metrics": {"test_acc": acc, "val_acc": acc}}


def test_locality_table_measures_each_learner_as_the_decision_table_picks_it():
    """The locality table's accuracy is the configuration with the best validation accuracy on the learner's widest
    comparison, never the best test accuracy of any configuration or dataset; a hybrid (bp + fa in conv) is not
    backprop's number; a registered study (no learner) has no row."""
    def run(learner, acc, val, dataset="cifar-10", **params):
        r = _net_run(learner, 10, acc, **params)
        r["config"]["dataset"], r["metrics"]["val_acc"] = dataset, val
        r["hash"] += f"{dataset}-{acc}"
        return r

    rows = [run("bp", 0.70, 0.71, arch="sal_cnn"), run("bp", 0.72, 0.69, arch="sal_cnn", lr=0.1),
            run("bp", 0.80, 0.80, arch="sal_cnn", conv_mode="fa"), run("fa", 0.60, 0.60, arch="sal_cnn"),
            run("bp", 0.99, 0.99, dataset="mnist", arch="sal_cnn"),
            {**run("sal", 0.5, 0.5), "config": {"learner": "sal-sampling", "dataset": "study", "epochs": 0,
                                                 "seed": 0, "params": {}}}]
    head, cells = report.locality_rows(report.summarize(rows))
    measured = {c[0]: c[head.index("measured test acc %")] for c in cells}
    assert measured["bp"].startswith("70.00 (cifar-10/")  # not 72 (best test), 80 (the hybrid) or 99 (mnist)
    assert "sal-sampling" not in measured and measured["fa"].startswith("60.00")


def test_vs_backprop_compares_the_same_network_whichever_preset_names_it_at_the_same_budget():
    """DLL's preset ``cnn-cifar`` is backprop's ``arch: lv_cnn_cifar``: one network, so DLL gets a gap; MLPs of other
    widths are other networks; backprop with FA in its convolutions is no reference and has a row of its own; the
    reference trained for as many epochs is preferred, and one of another budget is named in the cell."""
    assert report.network_of({"learner": "dll", "preset": "cnn-cifar", "params": {}}) == \
        report.network_of({"learner": "bp", "params": {"arch": "lv_cnn_cifar"}})
    wide = report.network_of({"learner": "bp", "params": {"arch": "mlp", "hidden": [1024, 512, 256], "act": "tanh"}})
    assert wide == report.network_of({"learner": "dll", "preset": "mlp-mnist", "params": {}})
    assert wide != report.network_of({"learner": "bp", "params": {"arch": "mlp", "hidden": [1024], "act": "tanh"}})
    for e in learners.entries():  # every learner names its default network, or none (its preset name stands)
        assert e.cls.network(dict(e.defaults)) is None or report.network_of({"learner": e.name, "params": {}})
    assert not report.is_reference({"learner": "bp", "params": {"arch": "sal_cnn", "conv_mode": "fa"}})
    assert report.is_reference({"learner": "bp", "params": {"arch": "sal_cnn"}})
    assert not report.is_reference({"learner": "fa", "params": {"arch": "sal_cnn"}})
    rows = [_net_run("bp", 45, 0.77, arch="lv_cnn_cifar"), _net_run("bp", 10, 0.70, arch="lv_cnn_cifar"),
            _net_run("dll", 45, 0.71, preset="cnn-cifar"), _net_run("dll-fa", 20, 0.72, preset="cnn-cifar"),
            _net_run("bp", 6, 0.73, arch="sal_cnn"), _net_run("bp", 40, 0.80, arch="sal_cnn", conv_mode="fa"),
            _net_run("fa", 40, 0.66, arch="sal_cnn"),
            _net_run("bp", 10, 0.50, arch="mlp", hidden=[64]), _net_run("pc", 10, 0.45, preset="mlp-cifar")]
    lucky = _net_run("bp", 45, 0.79, arch="lv_cnn_cifar", lr=0.1)  # the best test accuracy, a worse validation one
    lucky["metrics"]["val_acc"] = 0.60
    rows.append(lucky)
    head, cells = report.decision_rows(report.summarize(rows))["cifar-10"]
    gap = {report._text(c[1]): c[head.index("vs backprop (pp)")] for c in cells}
    assert gap["dll"] == "-6.00"  # against backprop's 45-epoch run of the same CNN chosen by validation (not the
    # test-best lr 0.1 one, which would give -8.00), not its 10-epoch one
    assert gap["dll-fa"] == "-5.00 (reference: 45 epochs)"  # no 20-epoch reference: the best, with its budget
    assert gap["fa"] == "-7.00 (reference: 6 epochs)"  # "BP in FC + FA in conv" (80 %) is not the reference
    assert gap["pc"] == "—"  # DLL's CIFAR-10 MLP is 4096-2048-1024-256 wide; backprop ran only a 64-unit MLP
    assert gap["bp + fa in conv"] == "+7.00 (reference: 6 epochs)"  # the hybrid is ranked apart, under its name,
    assert gap["bp"] == "reference"  # and bp's own row is its best-validated exact config, not the hybrid
    assert report.method_of({"learner": "kp", "params": {"arch": "sal_cnn", "conv_mode": "fa"}}) == "kp + fa in conv"
    assert report.method_of({"learner": "fa", "params": {"arch": "sal_cnn", "conv_mode": "fa"}}) == "fa"
    assert "bp + fa in conv" in [c[0] for c in report.comparison_rows(report.summarize(rows))[1]]  # every table


def test_the_decision_table_draws_the_curves_and_per_network_angles_of_the_configurations_it_ranks(tmp_path):
    """Under each decision table: the learning curves of exactly the configurations it ranks (by the table's rank and
    name, a hybrid named as a hybrid), drawn from imported records' curves too; the per-layer angles in one figure per
    network (layer i of LeNet is not layer i of another net); and a sentence naming the ranked rows without a curve."""
    def rec(learner, acc, val, angles=True, **params):
        curve = [{"epoch": e, "test_acc": acc - 0.1 / e, "val_acc": val - 0.1 / e,
                  **({"angle_deg/0": 80.0 / e, "angle_deg/1": 70.0 / e} if angles else {})} for e in (1, 2, 3)]
        return {"learner": learner, "dataset": "cifar-10", "epochs": 3, "seed": 0, "params": params,
                "test_acc": acc, "val_acc": val, "status": "done", "curve": curve}

    db_path = tmp_path / "r.db"
    db = ResultsDB(db_path)
    db.import_records("s", [rec("fa", 0.6, 0.6, arch="sal_cnn"), rec("fa", 0.65, 0.5, arch="sal_cnn", lr=0.1),
                            rec("bp", 0.7, 0.7, arch="sal_cnn", conv_mode="fa"), rec("fa", 0.55, 0.55, arch="lenet5"),
                            {**rec("kp", 0.5, 0.5, angles=False, arch="sal_cnn"), "curve": []}])
    groups = report.summarize(report.imported_rows(db))
    db.close()
    ranked = report.decision_picks(groups)["cifar-10"]
    assert [(report.method_of(g["rows"][0]["config"]), g["acc_mean"]) for g in ranked] == \
        [("bp + fa in conv", 0.7), ("fa", 0.6), ("kp", 0.5)]  # fa by validation (0.6), not its better test (0.65)
    figs, missing = report.decision_figures(ranked)
    assert [f[0] for f in figs] == ["decision-curves-cifar-10", "decision-angles-layers-cifar-10"]  # one net
    assert missing == "Not drawn (their records keep no accuracy per epoch): 3. kp (sal_cnn)."
    lenet = [g for g in groups if g["rows"][0]["config"]["params"]["arch"] == "lenet5"]
    figs, _ = report.decision_figures(ranked[:2] + lenet)
    titles = [t for slug, t, png in figs if slug.startswith("decision-angles-layers-cifar-10-") and png[:4] == b"\x89PNG"]
    assert len(titles) == 2 and "lenet5" in titles[1] and "sal_cnn" in titles[0]
    report.write_report(db_path, tmp_path / "rep", ("md", "html"))
    md = (tmp_path / "rep" / "report.md").read_text()
    table_end = md.index("](figures/decision-curves-cifar-10.png)")
    assert md.index("### cifar") < table_end < md.index("## Every configuration")
    assert "keep no accuracy per epoch\\): 3. kp \\(sal\\_cnn\\)." in md and (tmp_path / "rep/figures/decision-curves-cifar-10.png").exists()
