"""The ``neuroplastic`` command line: train, bench, report, data, learners.

::

    neuroplastic train bp-digits --set params.lr=0.01 --epochs 5
    neuroplastic train my.yaml --device cuda --out results/train/my
    neuroplastic bench quick --jobs 2
    neuroplastic report --format md --format html --format json
    neuroplastic compare bp fa --dataset mnist --preset lenet5 --seeds 0 1 2
    neuroplastic export tensorboard --out results/tensorboard | export mlflow --experiment NAME
    neuroplastic data list | data verify mnist | data download mnist
    neuroplastic learners

Errors caused by input (unknown learner, unknown config key, bad value, missing or corrupt file:
:class:`~neuroplastic.experiment.InputError`, :class:`~neuroplastic.data.core.DatasetError`) print one line to
stderr and exit with status 2. Any other exception is an internal error: one line naming it and the log file that
keeps its traceback (``results/logs/``), exit status 1. ``NEUROPLASTIC_DEBUG=1`` shows tracebacks instead.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(InputError):
    """Bad command-line input; printed as one line, exit status 2."""


# --------------------------------------------------------------------------------------------------
# helpers
def parse_set(items: list[str], flag: str = "--set") -> list[tuple[str, Any]]:
    """Parse ``key=value`` strings given with option ``flag`` (named in errors); values are YAML scalars/flow
    collections (``0.01``, ``1e-3``, ``true``, ``[64, 64]``, ``null``); keys may be dotted (``params.lr``)."""
    from . import experiment

    out = []
    for item in items:
        if "=" not in item:
            raise UsageError(f"{flag} expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise UsageError(f"{flag}: bad key in {item!r}")
        try:
            value = experiment.yaml_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise UsageError(f"{flag} {key}: value {raw!r} is not a valid YAML value ({e.__class__.__name__})") from None
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string; a number is meant
            try:
                value = float(value) if value.strip().lower() not in ("nan", "inf", "-inf", "+inf") else value
            except ValueError:
                pass
        out.append((key, value))
    return out


def load_config(arg: str | None) -> dict[str, Any]:
    """A config from a YAML path, or ``{"recipe": NAME}`` for a packaged recipe (empty when ``arg`` is None)."""
    from . import experiment

    if arg is None:
        return {}
    p = Path(arg)
    if p.is_file() or p.suffix in (".yaml", ".yml") or os.sep in arg:
        return experiment.load_yaml(p)
    if arg in experiment.recipe_names():
        return {"recipe": arg}
    raise UsageError(f"no config file or recipe named {arg!r}; recipes: {', '.join(experiment.recipe_names()) or 'none'}")


def _command_line(argv: list[str] | None) -> str:
    args = sys.argv[1:] if argv is None else argv
    return "neuroplastic " + " ".join(shlex.quote(a) for a in args)


def _set_data_root(root: str | None) -> None:
    if root:
        from .data.core import ENV_VAR

        os.environ[ENV_VAR] = str(Path(root).expanduser())


def _table(head: list[str], rows: list[list[str]]) -> str:
    from .bench.report import text_table

    return text_table(head, rows)


# --------------------------------------------------------------------------------------------------
# commands
def cmd_train(a: argparse.Namespace, command: str) -> int:
    """Train one config; write ``records.json``, ``history.json``, ``config.yaml``, checkpoints and the trained
    model to --out, and the run into the results store (``--db``, suite ``train``) beside ``bench``'s runs. A run
    that diverges leaves its last good checkpoint and the ``history.json`` of the epochs it finished."""
    from . import experiment
    from .bench.suite import set_dotted
    from .learners import NonFiniteError
    from .trainer import EpochLines

    cfg = load_config(a.config)
    for flag in ("learner", "dataset", "preset", "epochs", "seed", "batch_size"):
        v = getattr(a, flag)
        if v is not None:
            cfg[flag] = v
    for key, value in parse_set(a.set or []):
        cfg = set_dotted(cfg, key, value)
    if a.device:
        cfg["device"] = a.device
    _set_data_root(a.data_root)
    cfg = experiment.validate(cfg)
    experiment.preflight(cfg)  # a value the learner refuses: an error before anything is written or read
    h = experiment.config_hash(cfg)
    out_dir = Path(a.out) if a.out else Path("results") / "train" / h
    ckpt = out_dir / "checkpoint.pt"
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {str(out_dir)!r} is a file, not a folder")
    if ckpt.exists() and not a.resume:
        raise UsageError(f"{out_dir} already holds a checkpoint; pass --resume to continue it or choose --out")
    if (out_dir / "config.yaml").exists() and not ckpt.exists():
        raise UsageError(f"{out_dir} already holds a config.yaml that is not a run's; choose another --out")
    if a.resume:
        experiment.check_resume(out_dir, cfg)  # before anything is written
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    print(f"train {h}: {cfg['learner']} on {cfg['dataset']} ({cfg['epochs']} epochs, seed {cfg['seed']}, "
          f"{cfg['device']}) -> {out_dir}", flush=True)

    lines = () if a.quiet else (EpochLines(lambda line: print("  " + line, flush=True)),)
    try:
        res = experiment.run(cfg, checkpoint_dir=out_dir, resume=a.resume,
                             progress=not a.quiet and sys.stderr.isatty(), callbacks=lines)
    except NonFiniteError as e:  # diverged: the finished epochs' curve goes beside the last good checkpoint
        if not e.history:
            raise
        experiment.write_json_atomic(e.history, out_dir / "history.json")
        raise NonFiniteError(f"{e}; the curve of the {len(e.history)} finished epochs is in "
                             f"{out_dir / 'history.json'}", history=e.history) from None
    except BaseException:
        if created and not ckpt.exists():  # failed before the first epoch: leave nothing behind
            (out_dir / "config.yaml").unlink(missing_ok=True)
            try:
                out_dir.rmdir()
            except OSError:
                pass
        raise
    recs = experiment.records(res, command=command)
    rec = recs[0]
    experiment.write_json_atomic(recs, out_dir / "records.json")
    experiment.write_json_atomic(res.history, out_dir / "history.json")
    from .bench.db import ResultsDB

    db = ResultsDB(a.db)
    db.put_done("train", h, cfg, metrics=res.metrics, history=res.history, env=res.env,
                train_seconds=res.train_seconds, wall_seconds=res.wall_seconds, record=rec, records=recs,
                command=command)
    db.close()
    acc = rec.get("test_acc")
    print(f"done: test acc {100 * acc:.2f}%" if isinstance(acc, (int, float)) else "done",
          f"({rec['train_seconds']:.1f} s training, status {rec['status']}); records: {out_dir / 'records.json'}; "
          f"store: {a.db}")
    return 0


def cmd_bench(a: argparse.Namespace, command: str) -> int:
    """Run a suite (see :mod:`neuroplastic.bench.runner`)."""
    from .bench import runner, suite

    _set_data_root(a.data_root)
    if a.jobs is not None and a.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {a.jobs}")
    if a.threads is not None and a.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {a.threads}")
    if a.max_attempts < 1:
        raise UsageError(f"--max-attempts must be >= 1 (--retry-failed retries every failed run), got {a.max_attempts}")
    if a.address and a.backend != "ray":
        raise UsageError("--address needs --backend ray")
    if a.backend == "ray" and not a.list and not a.dry_run:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise UsageError("--backend ray needs Ray: pip install 'neuroplastic[dist]'")
    if a.device:
        from .experiment import check_device

        check_device(a.device)
    for flag, path in (("--results-dir", Path(a.results_dir)), ("--db", Path(a.db).parent)):
        if path.exists() and not path.is_dir():
            raise UsageError(f"{flag} {str(path)!r} is a file, not a folder")
    if a.list:
        rows = [[r["name"], r["role"], str(r["runs"]), "?" if r["cpu_minutes"] is None else f"{r['cpu_minutes']:g}",
                 r["description"][:90]] for r in suite.listing()]
        print(_table(["suite", "role", "runs", "CPU min (2 cores)", "description"], rows))
        return 0
    if a.suite is None:
        raise UsageError("name a suite (built-in name or YAML path), or --list")
    s = suite.load(a.suite)
    if a.where:
        s = s.where(parse_set(a.where, "--where"))
    if a.dry_run:
        from .bench.db import ResultsDB
        from .bench.report import summarize

        status, published = {}, {}
        if Path(a.db).exists():
            db = ResultsDB(a.db)
            status = {r["hash"]: r["status"] for r in db.runs(hashes=[h for h, _ in s.runs])}
            published = db.published([h for h, _ in s.runs])  # records imported from benchmarks/results
            db.close()
        print(f"suite {s.name}: {s.description}")
        groups = summarize([{"hash": h, "config": c, "status": "new"} for h, c in s.runs])
        variant = {r["hash"]: g["variant"] for g in groups for r in g["rows"]}  # what tells apart cells of a learner
        cols = {"hash": [h for h, _ in s.runs], "run": [runner.describe(c) for _, c in s.runs],
                "variant": [variant[h] for h, _ in s.runs], "epochs": [str(c["epochs"]) for _, c in s.runs],
                "status": [status.get(h, "new") for h, _ in s.runs],
                "published in": [", ".join(published.get(h, [])) for h, _ in s.runs],
                "last epoch": ["" if status.get(h) == "done" else runner.last_progress(Path(a.results_dir), h)
                               for h, _ in s.runs]}
        cols = {k: v for k, v in cols.items() if k in ("hash", "run", "epochs", "status") or any(v)}
        print(_table(list(cols), [list(r) for r in zip(*cols.values())]))
        if published:
            print(f"{len(published)} of {len(s.runs)} runs have a published record (imported into {a.db}); "
                  "the same command re-runs them beside it")
        return 0
    try:
        counts = runner.run_suite(s, db_path=a.db, jobs=a.jobs, results_dir=a.results_dir, device=a.device,
                                  retry_failed=a.retry_failed, max_attempts=a.max_attempts, command=command,
                                  report=not a.no_report, threads=a.threads, backend=a.backend,
                                  address=a.address)
    except runner.Interrupted as e:
        print(str(e), file=sys.stderr)
        return EXIT_INTERRUPTED
    return 1 if counts["failed"] else 0


def cmd_compare(a: argparse.Namespace, command: str) -> int:
    """Two learners, same data/architecture/budget/seeds: run them as a suite, then the paired table and curves."""
    from .bench import compare, runner
    from .bench.db import ResultsDB
    from .bench.report import md_table, write_atomic
    from .bench.suite import SuiteError, set_dotted

    _set_data_root(a.data_root)
    base: dict[str, Any] = {}
    for key, value in parse_set(a.set or []):
        base = set_dotted(base, key, value)
    only: list[dict[str, Any]] = [{}, {}]
    for i, (flag, items) in enumerate((("--set-a", a.set_a), ("--set-b", a.set_b))):
        for key, value in parse_set(items or [], flag):
            only[i] = set_dotted(only[i], key, value)
    try:
        s = compare.compare_suite(a.learner_a, a.learner_b, dataset=a.dataset, preset=a.preset, seeds=a.seeds,
                                  epochs=a.epochs, base=base, only_a=only[0], only_b=only[1])
    except (ValueError, SuiteError) as e:
        raise UsageError(str(e)) from None
    try:
        runner.run_suite(s, db_path=a.db, jobs=a.jobs, results_dir=a.results_dir, command=command, report=False,
                         threads=a.threads)
    except runner.Interrupted as e:
        print(str(e), file=sys.stderr)
        return EXIT_INTERRUPTED
    db = ResultsDB(a.db)
    rows = db.runs(hashes=[h for h, _ in s.runs])
    db.close()
    stats = compare.paired(rows, a.learner_a, a.learner_b)
    head, cells = compare.paired_table(stats, a.learner_a, a.learner_b)
    differ = compare.run_differences(s)
    note = ("Run settings that differ (each learner's own defaults; --set fixes them for both): " + "; ".join(differ)
            if differ else "")
    print(f"{s.description} (final-epoch test accuracy)")
    print(_table(head, cells))
    if note:
        print(note)
    out = Path(a.results_dir) / "compare" / s.name
    fig = compare.curves_figure(rows, a.learner_a, a.learner_b, out / "curves.png")
    md = [f"# {s.description}", "", f"Command: `{command}`", "", md_table(head, cells), ""] + ([note, ""] if note else [])
    if fig is not None:
        md += ["![validation accuracy per epoch](curves.png)", ""]
    print(write_atomic(out / "compare.md", "\n".join(md)))
    return 0 if len(stats["seeds"]) == len(a.seeds) else 1


def cmd_robustness(a: argparse.Namespace, command: str) -> int:
    """Measure saved trained models (no retraining): robustness and/or energy (``--what``) of the run folders given,
    or of every finished run of the store whose folder holds model.pt; with a store the metrics are added to the
    runs' records."""
    from .bench.db import ResultsDB
    from .energy import count_run
    from .experiment import load_trained
    from .robustness import robustness

    _set_data_root(a.data_root)
    db = ResultsDB(a.db) if Path(a.db).exists() else None
    if a.folders:
        targets = [(Path(f).name, Path(f)) for f in a.folders]
    elif db is not None:
        rows = db.runs(a.suite, status="done")
        targets = [(r["hash"], Path((r.get("env") or {}).get("run_dir") or Path(a.db).parent / "runs" / r["hash"]))
                   for r in rows]  # the run folder recorded by bench, else beside the store
        targets = [(h, f) for h, f in targets if (f / "model.pt").is_file()]
    else:
        raise UsageError(f"no run folders given and no results database at {a.db!r}")
    table, head = [], []
    for h, folder in targets:
        learner, bundle, cfg = load_trained(folder, device=a.device)
        res: dict = {}
        if a.what in ("robustness", "all"):
            res.update(robustness(learner, bundle, seed=cfg["seed"], batch_size=cfg["eval_batch_size"]))
        if a.what in ("energy", "all"):
            res.update(count_run(learner, bundle, batch_size=cfg["batch_size"]))
        stored = db is not None and db.add_metrics(h, res)
        shown = {k: v for k, v in res.items() if isinstance(v, float)}
        table.append([h, cfg["learner"], cfg["dataset"]] + [f"{100 * v:.2f}" if k.startswith("robust_") else f"{v:.4g}"
                                                            for k, v in shown.items()] + ["yes" if stored else "no"])
        head = ["run", "learner", "dataset"] + list(shown) + ["stored"]
    if db is not None:
        db.close()
    print(_table(head, table) if table else "no saved models (model.pt) found")
    return 0


def cmd_report(a: argparse.Namespace, command: str) -> int:
    """Write the report of the results database."""
    from .bench import report
    from .energy import EnergyModel

    formats = a.format or ["md", "html"]
    try:
        model = EnergyModel.parse(a.energy) if a.energy else None
    except ValueError as e:
        raise UsageError(f"--energy: {e}") from None
    files = report.write_report(a.db, a.out, formats, suite=a.suite, energy=model,
                                imported=False if a.no_imported else None)
    for f in files:
        if f.suffix != ".png":
            print(f)
    return 0


def cmd_export(a: argparse.Namespace, command: str) -> int:
    """Export the store's finished runs to TensorBoard event files or to MLflow."""
    from .bench import exports

    if a.tool == "tensorboard":
        n = exports.to_tensorboard(a.db, a.out, suite=a.suite)
        print(f"{n} run(s) written to {a.out} (tensorboard --logdir {a.out})")
    else:
        n = exports.to_mlflow(a.db, a.experiment, tracking_uri=a.tracking_uri, suite=a.suite)
        print(f"{n} run(s) logged to MLflow experiment {a.experiment!r}")
    return 0


def cmd_results(a: argparse.Namespace, command: str) -> int:
    """``results import FILE...`` into the store; ``results export`` the section files, RESULTS.md and the README
    table from it (see :mod:`neuroplastic.bench.store`)."""
    from .bench import store
    from .bench.db import ResultsDB
    from .experiment import load_yaml

    db = ResultsDB(a.db)
    try:
        if a.results_cmd == "import":
            paths = [Path(p) for p in a.paths]
            missing = [str(p) for p in paths if not p.exists()]
            if missing:
                raise UsageError(f"results import: not found: {', '.join(missing)}")
            meta = load_yaml(a.meta) if a.meta else None
            counts = store.import_files(db, paths, notes=Path(a.notes) if a.notes else None, meta=meta)
            print(f"imported {sum(counts.values())} records in {len(counts)} sections into {a.db}")
            return 0
        readme = Path(a.readme) if a.readme else None
        files = store.export(db, Path(a.out), readme=readme, include=tuple(a.include or ()), prune=a.prune)
        print(f"wrote {len(files)} files: {Path(a.out) / 'RESULTS.md'}" + (f", {readme}" if readme else ""))
        return 0
    finally:
        db.close()


def cmd_reliability(a: argparse.Namespace, command: str) -> int:
    """``reliability``: run the hostile-input campaign (:mod:`neuroplastic.reliability`) and record one row per
    category in the results store (section ``reliability``)."""
    import datetime

    from . import reliability
    from .bench.db import ResultsDB
    from .bench.store import portable_command
    from .experiment import environment

    if a.cases < 1 or a.kills < 1:
        raise UsageError(f"--cases and --kills must be >= 1, got {a.cases}, {a.kills}")
    cats = tuple(a.only) if a.only else reliability.CATEGORIES
    rows = reliability.run_campaign(cases=a.cases, kills=a.kills, seed=a.seed, categories=cats,
                                    progress=lambda c: print(f"reliability: {c} ...", file=sys.stderr, flush=True))
    env = {k: v for k, v in environment().items() if k != "python"}
    stamp = {**env, "command": portable_command(command), "date": datetime.date.today().isoformat(),
             "seed": a.seed}
    rows = [{**r, **stamp} for r in rows]
    db = ResultsDB(a.db)
    try:
        keep = [r for r in db.imported("reliability").get("reliability", []) if r.get("category") not in cats]
        order = {c: i for i, c in enumerate(reliability.CATEGORIES)}
        db.set_section("reliability", {"kind": "campaign", "title": reliability.TITLE})
        db.import_records("reliability", sorted(keep + rows, key=lambda r: order.get(r.get("category"), 99)))
    finally:
        db.close()
    from .bench.store import reliability_table

    print(reliability_table(rows))
    bad = sum(r["tracebacks"] + r["silent_wrong"] + r["data_lost"] + r["code_executed"] for r in rows)
    print(f"recorded in {a.db} (section reliability); {bad} bad outcomes")
    return 0 if bad == 0 else 1


def _download_module():
    try:
        from .data import download
    except ImportError:
        return None
    return download


def cmd_data(a: argparse.Namespace, command: str) -> int:
    """``data list`` | ``data verify NAME`` | ``data download NAME``."""
    from . import data
    from .data.core import data_root

    _set_data_root(a.data_root)
    dl = _download_module()
    root = data_root()
    if a.data_cmd == "list":
        rows = []
        for name in data.dataset_names():
            info = data.dataset_info(name)
            if dl is not None:
                st = dl.status(name)
                if len(st) > 70:
                    st = st[:67] + "..."
            else:
                st = "generated" if info.generated else "embedded" if info.embedded else "unknown"
            rows.append([name, info.description, st])
        print(f"data root: {root}")
        print(_table(["dataset", "description", "status"], rows))
        return 0
    try:
        data.dataset_info(a.name)
    except KeyError as e:
        raise UsageError(e.args[0]) from None
    if dl is None:
        print("neuroplastic.data.download is not available in this installation; cannot "
              f"{a.data_cmd} {a.name!r}", file=sys.stderr)
        return 1
    if a.data_cmd == "verify":
        problems = dl.verify(a.name)
        if problems:
            print(f"{a.name}: {len(problems)} problem(s) under {root}:", file=sys.stderr)
            for p in problems:
                print(f"  {p}", file=sys.stderr)
            return 1
        print(f"{a.name}: ok under {root}")
        return 0
    dl.download(a.name)
    problems = dl.verify(a.name)
    if problems:
        print(f"{a.name}: downloaded but {problems[0]}", file=sys.stderr)
        return 1
    print(f"{a.name}: ok under {root}")
    return 0


def _learner_detail(name: str) -> int:
    import inspect

    from . import experiment, learners

    try:
        e = learners.entry(name)
    except KeyError as err:
        raise UsageError(err.args[0]) from None
    print(f"{e.name}: {e.summary}")
    print(f"  paper: {e.paper}")
    print(f"  locality (C1 C2 C3): {e.locality.marks()}  {e.locality.why}")
    print(f"  supervised: {'yes' if e.supervised else 'no (linear probe on frozen features)'}")
    if e.defaults:
        print("  fixed by the registry: " + ", ".join(f"{k}={v!r}" for k, v in e.defaults.items()))
    sig = inspect.signature(e.cls.__init__).parameters
    rows = [[k, "" if sig[k].default is inspect.Parameter.empty else repr(sig[k].default)]
            for k in learners.allowed_params(name) if k not in ("in_shape", "n_classes", "seed")]
    print("  hyperparameters (config params.<name>; preset/arch also as the config key preset):")
    print("\n".join("    " + line for line in _table(["name", "default"], rows).splitlines()))
    for k, vals in e.cls.choices().items():
        print(f"  {k}: {', '.join(vals)}")
    nets = {}
    for v in e.cls.choices().get("preset", []):  # what each preset builds, as backprop's arch names it
        try:
            nets[v] = e.cls.network({**e.defaults, "preset": v})
        except (KeyError, TypeError, ValueError):
            nets[v] = None
    if any(nets.values()):
        print("  networks of the presets (the report compares a run with backprop on the same one):")
        print("\n".join(f"    {v:<12} {net}" for v, net in nets.items() if net))
    rd = e.cls.run_defaults(dict(e.defaults))
    if rd:
        print("  run settings when a config does not set them: " + ", ".join(f"{k}={v}" for k, v in rd.items()))
    mine = [r for r in experiment.recipe_names() if experiment.load_recipe(r).get("learner") == name]
    print(f"  recipes: {', '.join(mine) or '(none)'}  (neuroplastic train RECIPE)")
    return 0


def cmd_learners(a: argparse.Namespace, command: str) -> int:
    """Table of registered learners with paper, locality criteria and summary; one learner's details by name."""
    from . import learners

    if a.name:
        return _learner_detail(a.name)

    rows = []
    for e in learners.entries():
        rows.append([e.name, e.paper, *("✓" if v else "✘" for v in (e.locality.c1, e.locality.c2, e.locality.c3)),
                     "yes" if e.supervised else "no", "yes" if e.quick is not None else "no", e.summary])
    print(_table(["learner", "paper", "C1", "C2", "C3", "supervised", "quick", "summary"], rows))
    from . import studies

    print("\nstudies (a config {study: NAME, params: {...}, seed: N}, run by bench like a learner):")
    for name in studies.names():
        st = studies.entry(name)
        print(f"  {name}: {st.summary} ({st.paper})")
    if a.verbose:
        print()
        for e in learners.entries():
            print(f"{e.name}: {e.locality.why}")
    else:
        print("\nC1 no weight symmetry, C2 local error, C3 single phase (Lv et al., ICML 2025); "
              "-v for the reasons")
    return 0


#: Per-system analysis commands: ``neuroplastic analyze SYSTEM ...`` runs ``<module>.main(argv)``.
ANALYZERS = {
    "spiking": ("neuroplastic.spiking.analysis", "mode trajectories, |λ| spectrum, pruning, rasters, energy"),
    "hebbian": ("neuroplastic.hebbian.viz", "filters, receptive fields, UMAP, winner statistics"),
    "sal": ("neuroplastic.sal.analysis", "more SAL phases at fixed W: the alignment's noise floor and bias"),
}


def cmd_analyze(a: argparse.Namespace, command: str) -> int:
    """Dispatch to a learning system's analysis command."""
    import importlib

    mod_name, _ = ANALYZERS[a.system]
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        raise UsageError(f"analysis for {a.system!r} is not available ({e})") from None
    rc = mod.main(list(a.args))
    return int(rc or 0)


# --------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from . import __version__

    p = argparse.ArgumentParser(prog="neuroplastic", description="Biologically plausible local learning rules "
                                "beside backprop, measured the same way.")
    p.add_argument("--version", action="version", version=f"neuroplastic {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True

    t = sub.add_parser("train", help="train one config (YAML file or packaged recipe)",
                       description="Train one config. CONFIG is a YAML file or a packaged recipe: "
                       + (", ".join(_recipes()) or "none") + ". Writes config.yaml, records.json, "
                       "history.json, checkpoints and model.pt (weights and probe) to --out, and the run to the "
                       "results store. `neuroplastic learners NAME` lists a learner's architectures and recipes.")
    t.add_argument("config", nargs="?", metavar="CONFIG|RECIPE", help="YAML config path or recipe name")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key (YAML value; dotted keys reach into params, e.g. params.lr=0.01)")
    t.add_argument("--learner", help="config key learner")
    t.add_argument("--dataset", help="config key dataset")
    t.add_argument("--preset", help="config key preset (architecture)")
    t.add_argument("--epochs", type=int, help="config key epochs")
    t.add_argument("--seed", type=int, help="config key seed")
    t.add_argument("--batch-size", type=int, dest="batch_size", help="config key batch_size")
    t.add_argument("--device", help="cpu or cuda[:N]")
    t.add_argument("--data-root", help="data folder (sets NEUROPLASTIC_DATA)")
    t.add_argument("--out", help="output folder (default results/train/<config hash>)")
    t.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    t.add_argument("--db", default="results/neuroplastic.db", help="results store (default %(default)s)")
    t.add_argument("-q", "--quiet", action="store_true", help="no per-epoch lines or progress bars")
    t.set_defaults(func=cmd_train)

    b = sub.add_parser("bench", help="run a benchmark suite into the results database",
                       description="Run a suite (built-in name or YAML path). Finished runs are skipped; "
                       "interrupted ones resume from their last epoch checkpoint; failed ones are retried "
                       "up to --max-attempts (all of them with --retry-failed). Built-in suites: "
                       + ", ".join(_builtin_suites()))
    b.add_argument("suite", metavar="SUITE", nargs="?", help="built-in suite name or YAML path")
    b.add_argument("--list", action="store_true", help="list the built-in suites with their runs and estimated CPU cost")
    b.add_argument("--where", action="append", metavar="KEY=VALUE",
                   help="only the runs whose config has this value (dotted keys, repeatable): one cell of a study")
    b.add_argument("--jobs", "-j", type=int, default=None,
                   help="worker processes (default: one per CPU core, at most 4); each gets cores/jobs torch threads")
    b.add_argument("--threads", type=int, default=None,
                   help="torch threads per worker (default: cores // jobs)")
    b.add_argument("--db", default="results/neuroplastic.db", help="results database (default %(default)s)")
    b.add_argument("--results-dir", default="results", help="checkpoints and report folder (default %(default)s)")
    b.add_argument("--device", help="cpu or cuda[:N] for every run (not part of the config hash)")
    b.add_argument("--data-root", help="data folder (sets NEUROPLASTIC_DATA)")
    b.add_argument("--retry-failed", action="store_true", help="retry every failed run, whatever its attempts")
    b.add_argument("--max-attempts", type=int, default=2, help="retry failed runs with fewer attempts (default 2)")
    b.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local process pool (default) or Ray tasks, one CPU (or GPU) each; the store is written by "
                   "this process alone")
    b.add_argument("--address", help="Ray cluster address (with --backend ray; default: a new local instance with "
                   "--jobs CPUs)")
    b.add_argument("--dry-run", action="store_true",
                   help="list the suite's runs, their status, the sections that publish a record of each (records "
                   "imported into --db) and an unfinished run's last epoch line; train nothing")
    b.add_argument("--no-report", action="store_true", help="print the table but write no report files")
    b.set_defaults(func=cmd_bench)

    c = sub.add_parser("compare", help="two learners on the same data, architecture, budget and seeds: paired table",
                       description="Run learners A and B with one shared config (dataset, preset, epochs, --set keys; "
                       "--set-a/--set-b for keys one side names differently) for every seed into the results store "
                       "(resumable, like bench), refusing two learners that would train different networks, then "
                       "print the per-seed "
                       "paired table (differences, mean, t, exact sign-flip p) and write results/compare/NAME/ "
                       "(compare.md, curves.png).")
    c.add_argument("learner_a", metavar="A")
    c.add_argument("learner_b", metavar="B")
    c.add_argument("--dataset", default="digits", help="dataset of both (default %(default)s)")
    c.add_argument("--preset", help="architecture/preset of both (passed as preset or arch)")
    c.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    c.add_argument("--epochs", type=int, help="epochs of both")
    c.add_argument("--set", action="append", metavar="KEY=VALUE", help="shared config key (dotted, repeatable)")
    c.add_argument("--set-a", action="append", metavar="KEY=VALUE",
                   help="config key of A only, where the two name one network differently (e.g. preset=cnn-cifar)")
    c.add_argument("--set-b", action="append", metavar="KEY=VALUE",
                   help="config key of B only (e.g. params.arch=lv_cnn_cifar); A and B must still train one network")
    c.add_argument("--jobs", "-j", type=int, default=None, help="worker processes")
    c.add_argument("--threads", type=int, default=None, help="torch threads per worker")
    c.add_argument("--db", default="results/neuroplastic.db", help="results database (default %(default)s)")
    c.add_argument("--results-dir", default="results", help="checkpoints and compare folder (default %(default)s)")
    c.add_argument("--data-root", help="data folder (sets NEUROPLASTIC_DATA)")
    c.set_defaults(func=cmd_compare)

    rb = sub.add_parser("robustness", help="accuracy of saved trained models under device mismatch, input noise and "
                        "weight quantisation (no retraining); --what energy recounts their energy",
                        description="For each run folder given (or every finished run of the store with a saved "
                        "model.pt): test accuracy with log-normal weight mismatch sigma 0/0.05/0.1/0.2, input noise "
                        "and 8/4-bit weights; the metrics are added to the store's records (the report's robustness "
                        "table).")
    rb.add_argument("folders", nargs="*", metavar="RUN_FOLDER")
    rb.add_argument("--db", default="results/neuroplastic.db", help="results database (default %(default)s)")
    rb.add_argument("--suite", help="only the runs of this suite")
    rb.add_argument("--what", choices=("robustness", "energy", "all"), default="robustness",
                    help="what to measure: robustness (default), energy (operation counts and energy, recounted), all")
    rb.add_argument("--device", default="cpu", help="device to evaluate on (default %(default)s)")
    rb.add_argument("--data-root", help="data folder (sets NEUROPLASTIC_DATA)")
    rb.set_defaults(func=cmd_robustness)

    r = sub.add_parser("report", help="render the results database (md, html, json)",
                       description="Render the results database: Markdown (+ PNG figures), self-contained "
                       "HTML, or the JSON list of standard run records (--format json). First the comparison that "
                       "decides (per dataset, learners ranked with parameters, read-out, time, memory, energy, "
                       "locality and the gap to backprop), label efficiency, robustness and the papers' numbers "
                       "beside ours; then every configuration, curves and pictures.")
    r.add_argument("--db", default="results/neuroplastic.db", help="results database (default %(default)s)")
    r.add_argument("--out", default="results/report", help="output folder, or a .json file for --format json "
                   "(default %(default)s)")
    r.add_argument("--format", action="append", choices=("md", "html", "json"),
                   help="repeatable; default md and html")
    r.add_argument("--suite", help="only the runs of this suite")
    r.add_argument("--energy", metavar="mac=PJ,ac=PJ,read=PJ",
                   help="energy per operation in pJ for the energy columns (default: 45 nm, Horowitz 2014: "
                   "mac=4.6,ac=0.9,read=5); the stored operation counts are reused, nothing is rerun")
    r.add_argument("--no-imported", action="store_true", dest="no_imported",
                   help="leave out the store's imported records (included by default when no --suite is given)")
    r.set_defaults(func=cmd_report)

    ex = sub.add_parser("export", help="export the store's runs to TensorBoard or MLflow",
                        description="Write every finished run (config, per-epoch curves, final metrics) as TensorBoard "
                        "event files (needs the tensorboard package) or as MLflow runs (needs mlflow). Runs exported "
                        "before are skipped.")
    ex.add_argument("tool", choices=("tensorboard", "mlflow"), metavar="TOOL", help="tensorboard or mlflow")
    ex.add_argument("--db", default="results/neuroplastic.db", help="results store (default %(default)s)")
    ex.add_argument("--suite", help="only the runs of this suite")
    ex.add_argument("--out", default="results/tensorboard", help="TensorBoard log folder (default %(default)s)")
    ex.add_argument("--experiment", default="neuroplastic", help="MLflow experiment (default %(default)s)")
    ex.add_argument("--tracking-uri", dest="tracking_uri",
                    help="MLflow tracking URI (default: MLflow's own, $MLFLOW_TRACKING_URI)")
    ex.set_defaults(func=cmd_export)

    rs = sub.add_parser("results", help="import records into the results store; export RESULTS.md from it",
                        description="The results store is the SQLite database of `bench` and `train`. `import` "
                        "loads record files (JSON lists or exported section files) into it; `export` writes "
                        "<out>/results/<section>.json, <out>/RESULTS.md and, with --readme, the README's results "
                        "table from the store alone.")
    rs.add_argument("--db", default="results/neuroplastic.db", help="results store (default %(default)s)")
    rsub = rs.add_subparsers(dest="results_cmd", metavar="ACTION")
    rsub.required = True
    ri = rsub.add_parser("import", help="load record files into the store (one section per file)")
    ri.add_argument("paths", nargs="+", metavar="PATH", help="JSON files or folders of them")
    ri.add_argument("--notes", help="folder of <section>.md notes to attach")
    ri.add_argument("--meta", help="YAML mapping section -> extra metadata (title, headline rows)")
    re_ = rsub.add_parser("export", help="write section files, RESULTS.md and the README table from the store")
    re_.add_argument("--out", default="benchmarks", help="folder of RESULTS.md and results/ (default %(default)s)")
    re_.add_argument("--readme", help="also regenerate the results table of this README (between its markers)")
    re_.add_argument("--include", action="append", help="also export this private section (quick, train)")
    re_.add_argument("--prune", action="store_true", help="remove section files the store does not have")
    rs.set_defaults(func=cmd_results)

    rl = sub.add_parser("reliability", help="hostile-input campaign: fuzzing, planted files, kills; recorded",
                        description="Try hostile and careless input in every category (config fuzzing, YAML, "
                        "dataset files, files read back, resume, CLI, kills of bench) and record per category "
                        "the cases, clear errors, tracebacks, silent wrong results, data lost and code executed "
                        "in the results store (section reliability, rendered by `results export`). Exit 1 if any "
                        "case ended badly.")
    rl.add_argument("--cases", type=int, default=2000, help="random configs to fuzz (default %(default)s)")
    rl.add_argument("--kills", type=int, default=5, help="SIGKILLs of a running bench (default %(default)s)")
    rl.add_argument("--seed", type=int, default=0, help="seed of the random cases (default %(default)s)")
    rl.add_argument("--only", action="append", metavar="CATEGORY",
                    help="run only this category (repeatable): config, yaml, dataset, 'files read back', resume, "
                    "cli, kills")
    rl.add_argument("--db", default="results/neuroplastic.db", help="results store (default %(default)s)")
    rl.set_defaults(func=cmd_reliability)

    d = sub.add_parser("data", help="list, verify or download datasets",
                       description="Datasets at the data root ($NEUROPLASTIC_DATA, ~/.cache/neuroplastic by default).")
    d.add_argument("--data-root", help="data folder (sets NEUROPLASTIC_DATA)")
    dsub = d.add_subparsers(dest="data_cmd", metavar="ACTION")
    dsub.required = True
    dl = dsub.add_parser("list", help="datasets with description and status", description="Datasets with status.")
    dl.add_argument("--data-root", default=argparse.SUPPRESS, help="data folder (also accepted after the action)")
    for action, text in (("verify", "check the files of a dataset (presence, checksums)"),
                         ("download", "fetch the official files of a dataset and verify them")):
        x = dsub.add_parser(action, help=text, description=text)
        x.add_argument("name", metavar="NAME", help="dataset name")
        x.add_argument("--data-root", default=argparse.SUPPRESS, help="data folder (also accepted after the action)")
    d.set_defaults(func=cmd_data)

    lp = sub.add_parser("learners", help="table of learners with paper and locality criteria",
                        description="Registered learners: paper, locality criteria C1 C2 C3, supervised, summary.")
    lp.add_argument("name", nargs="?", metavar="NAME", help="one learner: hyperparameters, architectures, recipes")
    lp.add_argument("-v", "--verbose", action="store_true", help="also print why each criterion holds or not")
    lp.set_defaults(func=cmd_learners)

    an = sub.add_parser("analyze", help="pictures and analyses of a trained model (per learning system)",
                        description="Analyses of a trained model: " + "; ".join(
                            f"{k}: {v[1]}" for k, v in ANALYZERS.items())
                        + ". Arguments after SYSTEM go to that system's command (try SYSTEM --help).")
    an.add_argument("system", choices=sorted(ANALYZERS), metavar="SYSTEM", help=", ".join(sorted(ANALYZERS)))
    an.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the system's analysis command")
    an.set_defaults(func=cmd_analyze)
    return p


def _packaged(folder: str) -> list[str]:
    """Names of the packaged YAML files in ``folder`` (``recipes``, ``bench/suites``), read without importing the
    modules that use them (they import torch): ``--help`` stays fast."""
    from importlib import resources

    try:
        base = resources.files("neuroplastic").joinpath(*folder.split("/"))
        return sorted(p.name[:-5] for p in base.iterdir() if p.name.endswith(".yaml"))
    except OSError:  # help text only
        return []


def _recipes() -> list[str]:
    return _packaged("recipes")


def _builtin_suites() -> list[str]:
    return _packaged("bench/suites")


def _user_errors() -> tuple[type[BaseException], ...]:
    from .data.core import DatasetError

    return (InputError, DatasetError, FileNotFoundError, NotADirectoryError, IsADirectoryError)


def _log_internal(cmd: str, exc: BaseException) -> Path | None:
    """Write the traceback of an internal error to ``results/logs/`` (its run's log); returns the file."""
    import time
    import traceback

    try:
        path = Path("results") / "logs" / f"error-{cmd}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(traceback.format_exception(exc)))
        return path
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``neuroplastic`` command; returns the exit status."""
    parser = build_parser()
    a = parser.parse_args(argv)
    command = _command_line(argv)
    errors = _user_errors() if os.environ.get("NEUROPLASTIC_DEBUG") != "1" else ()
    try:
        return a.func(a, command)
    except errors as e:
        msg = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())
        print(f"neuroplastic {a.cmd}: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except FloatingPointError as e:  # NonFiniteError: the run diverged (not an input error)
        print(f"neuroplastic {a.cmd}: run stopped: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"neuroplastic {a.cmd}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as e:
        if os.environ.get("NEUROPLASTIC_DEBUG") == "1":
            raise
        log = _log_internal(a.cmd, e)
        where = f"traceback in {log}" if log else "set NEUROPLASTIC_DEBUG=1 for the traceback"
        print(f"neuroplastic {a.cmd}: internal error: {type(e).__name__}: {' '.join(str(e).split())[:300]} "
              f"({where})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
