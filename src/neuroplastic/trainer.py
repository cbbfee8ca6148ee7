"""The trainer: one loop for every learner, with metrics, atomic checkpoints, exact resume and NaN guards.

``fit`` knows only the learner protocol (:mod:`neuroplastic.learners.base`): ``train_step``,
``eval_step``, ``end_epoch``; for unsupervised learners it then fits the standard linear probe on cached
frozen features (:mod:`neuroplastic.probe`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import random
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import DataBundle, batches
from .learners.base import Learner, NonFiniteError, check_loss, listening

CHECKPOINT = "checkpoint.pt"


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; with ``deterministic`` ask torch for deterministic kernels. Fresh tensors are
    not NaN-filled (``torch.utils.deterministic.fill_uninitialized_memory``, on by default in deterministic
    mode, costs a pass over every allocation — 1–2 % of a Hebbian step); our code writes every element it
    reads, and the reproducibility tests check that seeded runs repeat exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = False


def load_state_file(path: str | os.PathLike, map_location: Any = "cpu", keys: tuple[str, ...] = ()) -> dict:
    """Read a checkpoint or model file this library wrote: ``torch.load(weights_only=True)`` (tensors and plain
    values only: no code runs), a mapping holding ``keys``. Anything else — a planted pickle, a damaged or
    foreign file — is a one-line :class:`~neuroplastic.errors.InputError` naming the file."""
    from .errors import InputError

    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError, RuntimeError (not a zip), EOFError, ...
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise InputError(f"{path}: refused: not a checkpoint/model file of this library, or damaged ({first[:160]})"
                         ) from None
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise InputError(f"{path}: not a checkpoint/model file of this library (no {', '.join(map(repr, missing))})")
    return state


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` by write-then-rename, so a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete ``*.tmp<PID>`` files in ``folder`` left by a write-then-rename that a kill interrupted (their process
    is gone); a live process's temporary is kept. Returns the files removed."""
    from .bench.db import pid_alive

    gone = []
    folder = Path(folder)
    if not folder.is_dir():
        return gone
    for f in folder.iterdir():
        m = re.fullmatch(r".+\.tmp(\d+)", f.name)
        if m and f.is_file() and not pid_alive(int(m.group(1))):
            f.unlink(missing_ok=True)
            gone.append(f)
    return gone


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory window for this run: CUDA's peak counters; on Linux the process's peak resident set
    (writing 5 to ``/proc/self/clear_refs`` resets ``VmHWM``), so a run does not report an earlier run's peak."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory since :func:`reset_peak_memory` (CUDA: peak allocated on the device; CPU: peak resident set,
    ``VmHWM`` on Linux, else the process's lifetime peak ``ru_maxrss``)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


@dataclasses.dataclass
class FitResult:
    """What a run produced: per-epoch history, final metrics, and why it ended.

    ``status`` is ``done`` or ``budget`` (a :class:`TimeBudget` ended it after ``epochs_done`` epochs);
    ``label_runs`` holds one row per label count of a label-efficiency protocol (``labels_per_class``,
    ``n_labels``, ``test_acc``, ``val_acc``, ``probe_epochs``).
    """

    history: list[dict[str, float]]
    final: dict[str, float]
    train_seconds: float
    peak_memory_mb: float
    epochs_done: int
    status: str = "done"
    label_runs: list[dict[str, Any]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class TrainState:
    """What callbacks see: ``epoch``, the index of the epoch in progress (0-based); ``step``, the steps finished in
    it; ``epochs``, the epochs planned; the training and wall seconds spent (over resumptions). A callback sets
    ``stop`` to a reason (e.g. ``"budget"``) to end the run after the current epoch."""

    epochs: int
    epoch: int = 0
    step: int = 0
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    stop: str | None = None


class Callback:
    """Hooks of :func:`fit`. ``on_step`` runs after every update, ``on_epoch_trained`` after an epoch's updates
    (before its evaluation; may set ``state.stop``), ``on_epoch_end`` with the epoch's logged row."""

    def on_step(self, state: TrainState) -> None:
        """After each training step."""

    def on_epoch_trained(self, state: TrainState) -> None:
        """After an epoch's updates, before it is evaluated."""

    def on_epoch_end(self, state: TrainState, row: dict[str, float]) -> None:
        """After an epoch's row (metrics, diagnostics) is complete and checkpointed."""


class TimeBudget(Callback):
    """End the run after the epoch at which another epoch (at the mean epoch time so far, evaluation included)
    would take the wall time spent past ``minutes``. The run is recorded with status ``budget``; the learning-rate
    schedule still spans the planned epochs (a budget cuts a run, it does not shorten its schedule)."""

    def __init__(self, minutes: float) -> None:
        if not minutes > 0:
            raise ValueError(f"budget minutes must be > 0, got {minutes!r}")
        self.seconds = 60.0 * float(minutes)

    def on_epoch_trained(self, state: TrainState) -> None:
        done = state.epoch + 1
        if done < state.epochs and state.wall_seconds * (done + 1) / done > self.seconds:
            state.stop = "budget"


class LogRows(Callback):
    """Call ``fn(row)`` with every epoch's row (the CLI's per-epoch lines)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def on_epoch_end(self, state: TrainState, row: dict[str, float]) -> None:
        self.fn(row)


def epoch_line(row: dict[str, Any], epochs: int | None = None) -> str:
    """An epoch's row as one line: ``epoch 9/45  train_loss 0.8123  val_acc 65.26%  test_acc 65.89%  151.2 s``
    (accuracies in percent, as in the summary line and the report; what the row lacks is left out)."""
    parts = [f"epoch {row['epoch']}" + (f"/{epochs}" if epochs else "")]
    if isinstance(row.get("train_loss"), (int, float)):
        parts.append(f"train_loss {row['train_loss']:.4f}")
    for k in ("val_acc", "test_acc"):
        if isinstance(row.get(k), (int, float)):
            parts.append(f"{k} {100 * row[k]:.2f}%")
    if isinstance(row.get("seconds"), (int, float)):
        parts.append(f"{row['seconds']:.1f} s")
    return "  ".join(parts)


def _duration(seconds: float) -> str:
    """``42 s``, ``17 min``, ``2 h 05 min``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class EpochLines(Callback):
    """Progress of a long run in plain lines (a log file, a terminal without progress bars): ``fn(line)`` with
    :func:`epoch_line` of each epoch and the wall time left at the run's pace so far (evaluations included, over
    resumptions), for epochs that end at least ``min_seconds`` after the previous line or after this callback was
    made (with 0, every epoch)."""

    def __init__(self, fn: Any, min_seconds: float = 0.0) -> None:
        self.fn, self.min_seconds, self.last = fn, float(min_seconds), time.perf_counter()

    def on_epoch_end(self, state: TrainState, row: dict[str, float]) -> None:
        done = state.epoch + 1
        final = done >= state.epochs or state.stop is not None
        if time.perf_counter() - self.last < self.min_seconds:
            return
        self.last = time.perf_counter()
        left = "" if final else f"  (about {_duration(state.wall_seconds / done * (state.epochs - done))} left)"
        self.fn(epoch_line(row, state.epochs) + left)


def hflip_batch(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    r"""Random horizontal flips: each image of ``x`` ``[N, C, H, W]`` mirrored with probability 1/2,
    :math:`\tilde x_n = m_n\,\mathrm{flip}(x_n) + (1-m_n)\,x_n`, :math:`m_n \sim \mathrm{Bernoulli}(1/2)` drawn
    from ``gen`` (the augmentation of the authors' training loader, Nimmo & Mondragón 2025)."""
    flip = torch.rand(len(x), generator=gen) < 0.5
    return torch.where(flip.to(x.device).view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)


def forward_seconds(learner: Learner, x: torch.Tensor, batch_size: int) -> float:
    """Seconds of a plain inference pass (``predict``, or ``features`` for unsupervised learners; no plasticity,
    evaluation mode) over ``x`` at ``batch_size``: the denominator of the cost studies' train/forward ratios."""
    was = learner.training
    learner.eval()
    fwd = learner.predict if learner.supervised else learner.features
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    with torch.no_grad():
        sync()
        t0 = time.perf_counter()
        for xb, _ in batches(x, x, batch_size):
            learner.reset_state()
            fwd(xb)
        sync()
    learner.train(was)
    return time.perf_counter() - t0


@torch.no_grad()
def evaluate(learner: Learner, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> dict[str, float]:
    """Run ``eval_step`` over a split and return ``acc`` (and ``loss`` if reported) as means."""
    was_training = learner.training
    learner.eval()
    tot: dict[str, float] = {}
    for xb, yb in batches(x, y, batch_size):
        learner.reset_state()
        for k, v in learner.eval_step(xb, yb).items():
            tot[k] = tot.get(k, 0.0) + float(v)
    learner.train(was_training)
    n = max(tot.pop("n", 0.0), 1.0)
    out = {"acc": tot.pop("correct", 0.0) / n}
    for k, v in tot.items():
        out[k] = v / n
    return out


def _split_metrics(learner: Learner, bundle: DataBundle, eval_batch_size: int, splits: tuple[str, ...],
                   ) -> dict[str, float]:
    out: dict[str, float] = {}
    for split in splits:
        ds = getattr(bundle, split)
        if ds is None:
            continue
        for k, v in evaluate(learner, ds.x, ds.y, eval_batch_size).items():
            out[f"{split}_{k}"] = v
    return out


def fit(learner: Learner, bundle: DataBundle, *, epochs: int, batch_size: int, seed: int = 0,
        checkpoint_dir: str | os.PathLike | None = None, resume: bool = False, progress: bool = True,
        eval_batch_size: int = 1000, check_every: int = 50, eval_train: bool = False, eval_every: int = 1,
        log: Any = None, callbacks: tuple[Callback, ...] | list[Callback] = (), checkpoint_every: int | None = None,
        hflip: bool = False, probe: dict[str, Any] | None = None, labels_per_class: list | None = None,
        min_steps: int = 500, forward_timing: int | None = None,
        checkpoint_meta: dict[str, Any] | None = None) -> FitResult:
    """Train ``learner`` on ``bundle`` for ``epochs``; evaluate validation and test after every
    ``eval_every``-th epoch and always after the last (tiny label sets train for hundreds of short epochs,
    where evaluating every epoch would cost more than training); an unsupervised learner is measured there by its
    :meth:`~neuroplastic.learners.base.Learner.monitor` (e.g. a log-likelihood estimate), outside training time.

    - Deterministic on CPU given ``seed`` (shuffling uses a dedicated generator saved in checkpoints).
    - With ``checkpoint_dir``, a checkpoint is written atomically after every epoch, and every
      ``checkpoint_every`` steps inside an epoch; ``resume=True`` continues from it exactly (weights, optimizer,
      scheduler, all RNG states, the epoch's shuffle order and partial sums, history).
    - ``callbacks`` (:class:`Callback`): e.g. :class:`TimeBudget`, which ends the run after an epoch
      (``FitResult.status == "budget"``); ``log(row)`` is a shorthand for :class:`LogRows`.
    - ``hflip``: random horizontal flips of training images (:func:`hflip_batch`, own seeded generator).
    - NaN/Inf in the loss (every step) or in any parameter (every ``check_every`` steps and at epoch
      end) raises :class:`NonFiniteError` naming the tensor and the step, with the finished epochs' rows as its
      ``history``; the last good checkpoint stays.
    - Unsupervised learners (``learner.supervised is False``) train with ``y=None``; then a linear probe
      is fitted on cached frozen features (:func:`neuroplastic.probe.fit_probe`, options ``probe``), and one
      more per count of ``labels_per_class`` (``FitResult.label_runs``).
    - ``forward_timing``: time a plain inference pass over that many training samples at ``batch_size``
      (``forward_epoch_seconds`` scaled to the whole split, and ``train_over_forward``).
    - ``checkpoint_meta`` (e.g. the config hash) is saved in every checkpoint; resuming a checkpoint whose meta
      differs is refused with an error naming both, before anything is trained or written.
    """
    if epochs < 0 or batch_size < 1 or eval_every < 1 or (checkpoint_every is not None and checkpoint_every < 1):
        raise ValueError(f"epochs must be >= 0, batch_size >= 1, eval_every >= 1 and checkpoint_every >= 1 "
                         f"(got {epochs}, {batch_size}, {eval_every}, {checkpoint_every})")
    expected = getattr(learner, "in_shape", None)
    if expected is not None and tuple(expected) != tuple(bundle.in_shape):
        raise ValueError(f"{learner.name}: built for inputs of shape {tuple(expected)}, but dataset "
                         f"{bundle.name!r} has samples of shape {tuple(bundle.in_shape)}")
    if hflip and bundle.train.x.dim() != 4:
        raise ValueError(f"hflip needs image inputs [N, C, H, W], dataset {bundle.name!r} has "
                         f"{tuple(bundle.train.x.shape)}")
    callbacks = list(callbacks) + ([LogRows(log)] if log is not None else [])
    device = next(iter(learner.parameters()), torch.empty(0)).device
    reset_peak_memory(device)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    if checkpoint_dir is not None:
        remove_stale_temporaries(checkpoint_dir)
    gen = torch.Generator().manual_seed(seed)
    aug = torch.Generator().manual_seed(20_000 + seed) if hflip else None
    n_train = len(bundle.train)
    steps_per_epoch = (n_train + batch_size - 1) // batch_size
    learner.configure(epochs, steps_per_epoch)
    history: list[dict[str, float]] = []
    st = TrainState(epochs)
    start_epoch, start_step, epoch_rng, sums0, epoch_secs0, stopped = 0, 0, None, {}, 0.0, None
    if resume and ckpt_path is not None and ckpt_path.exists():
        state = load_state_file(ckpt_path, device, ("learner", "shuffle_rng", "torch_rng"))
        saved = state.get("meta") or {}
        for k, v in (checkpoint_meta or {}).items():
            if k in saved and saved[k] != v:
                raise ValueError(f"{ckpt_path}: checkpoint of {k} {saved[k]!r}, this run has {v!r}; resume the same "
                                 "config or start another run folder")
        learner.load_training_state(state["learner"])
        gen.set_state(state["shuffle_rng"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        if aug is not None and state.get("aug_rng") is not None:
            aug.set_state(state["aug_rng"])
        history, start_epoch, st.train_seconds = state["history"], state["epoch"], state["train_seconds"]
        st.wall_seconds = state.get("wall_seconds", st.train_seconds)
        start_step, epoch_rng = state.get("step", 0), state.get("epoch_rng")
        sums0, epoch_secs0, stopped = state.get("sums", {}), state.get("epoch_seconds", 0.0), state.get("stopped")

    def save(epoch: int, **extra: Any) -> None:
        if ckpt_path is None:
            return
        atomic_save({"learner": learner.training_state(), "shuffle_rng": gen.get_state(),
                     "torch_rng": torch.get_rng_state(),
                     "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                     "aug_rng": aug.get_state() if aug is not None else None,
                     "history": history, "epoch": epoch, "train_seconds": st.train_seconds,
                     "wall_seconds": st.wall_seconds, "meta": dict(checkpoint_meta or {}), **extra}, ckpt_path)

    x_train, y_train = bundle.train.x, bundle.train.y
    try:
        for epoch in range(start_epoch, epochs if stopped is None else start_epoch):
            learner.train()
            st.epoch = epoch
            if start_step and epoch_rng is not None:
                gen.set_state(epoch_rng)  # replay this epoch's shuffle order, then skip the finished steps
            epoch_rng = gen.get_state()
            order = torch.randperm(n_train, generator=gen).to(x_train.device)  # as data.batches(shuffle=True)
            t0 = time.perf_counter()
            sums: dict[str, float] = dict(sums0) if start_step else {}
            epoch_secs = epoch_secs0 if start_step else 0.0
            nsteps = start_step
            bar = tqdm(range(start_step, steps_per_epoch), total=steps_per_epoch, initial=start_step,
                       desc=f"{learner.name} epoch {epoch + 1}/{epochs}", disable=not progress, leave=False,
                       file=sys.stderr)
            start_step = 0
            for step in bar:
                idx = order[step * batch_size:(step + 1) * batch_size]
                xb, yb = x_train[idx], y_train[idx]
                if aug is not None:
                    xb = hflip_batch(xb, aug)
                learner.reset_state()
                try:
                    with listening(functools.partial(bar.set_postfix_str, refresh=True)):  # long work in a step
                        metrics = learner.train_step(xb, yb if learner.supervised else None)
                except NonFiniteError as e:  # a learner's own check: say where in the run it happened
                    raise NonFiniteError(f"{e} (at epoch {epoch + 1} step {nsteps + 1})") from None
                nsteps += 1
                st.step = nsteps
                where = f"at epoch {epoch + 1} step {nsteps}"
                if "loss" in metrics:
                    check_loss(metrics["loss"], learner.name, where)
                if nsteps % check_every == 0:
                    learner.check_finite(where)
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                if progress and "loss" in metrics and nsteps % 10 == 0:
                    bar.set_postfix(loss=f"{sums['loss'] / nsteps:.4f}")
                for cb in callbacks:
                    cb.on_step(st)
                if checkpoint_every and nsteps % checkpoint_every == 0 and nsteps < steps_per_epoch:
                    learner.check_finite(where)
                    now = time.perf_counter() - t0
                    st.train_seconds += now
                    st.wall_seconds += now
                    epoch_secs += now
                    t0 = time.perf_counter()
                    save(epoch, step=nsteps, epoch_rng=epoch_rng, sums=sums, epoch_seconds=epoch_secs)
            learner.check_finite(f"at the end of epoch {epoch + 1}")
            diag = learner.end_epoch(epoch)
            seconds = time.perf_counter() - t0
            st.train_seconds += seconds
            st.wall_seconds += seconds
            epoch_secs += seconds
            for cb in callbacks:
                cb.on_epoch_trained(st)
            t1 = time.perf_counter()
            row: dict[str, float] = {"epoch": epoch + 1, "seconds": epoch_secs, "samples_per_s": n_train / epoch_secs}
            row.update({f"train_{k}": v / max(nsteps, 1) for k, v in sums.items()})
            if (epoch + 1) % eval_every == 0 or epoch + 1 == epochs or st.stop:
                if learner.supervised:
                    row.update(_split_metrics(learner, bundle, eval_batch_size,
                                              ("train", "val", "test") if eval_train else ("val", "test")))
                else:
                    was = learner.training
                    learner.eval()
                    row.update(learner.monitor(bundle))
                    learner.train(was)
            row.update(diag)
            history.append(row)
            st.wall_seconds += time.perf_counter() - t1
            save(epoch + 1, stopped=st.stop)
            for cb in callbacks:
                cb.on_epoch_end(st, row)
            if st.stop:
                stopped = st.stop
                break
    except NonFiniteError as err:  # the run diverged: its finished epochs travel with the error
        err.history = [dict(r) for r in history]
        raise

    final = dict(history[-1]) if history else {}
    label_runs: list[dict[str, Any]] = []
    if forward_timing:
        nt = min(int(forward_timing), n_train)
        fwd = forward_seconds(learner, x_train[:nt], batch_size) * n_train / nt
        final["forward_epoch_seconds"] = fwd
        if history:
            final["train_over_forward"] = history[-1]["seconds"] / fwd
    if not learner.supervised:
        from .probe import fit_probe

        probe_hist, label_runs = fit_probe(learner, bundle, seed=seed, progress=progress,
                                           eval_batch_size=eval_batch_size, options=probe,
                                           labels_per_class=labels_per_class, min_steps=min_steps)
        final.update(probe_hist[-1])
        final["probe_history"] = probe_hist  # type: ignore[assignment]
    return FitResult(history, final, st.train_seconds, peak_memory_mb(device), len(history), stopped or "done",
                     label_runs)
