"""Full Hebbian protocol on a real dataset (benchmark script, not a test).

One unsupervised epoch (checkpointed, resumable) → plain forward-pass timing on a 5,000-image subset (same
batch size) → feature caching → linear probe on all labels and on 1/10/100/1000 labels per class.
Writes a JSON list of standard records atomically to ``--out``.

    python benchmarks/hebbian_protocol.py --dataset cifar-10 --preset softhebb --root /work/shared/data \
        --threads 1 --out benchmarks/results/hebbian_cifar10_softhebb.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hebbian_common as hc

from neuroplastic.hebbian.learners import HebbianCNN


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--preset", default="softhebb")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--root", default=None, help="data root (default: $NEUROPLASTIC_DATA)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the preset's (10 SoftHebb, 64 Nimmo)")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--probe-epochs", type=int, default=None)
    ap.add_argument("--lr-scale", type=float, default=None,
                    help="factor on every Hebbian layer's base rate (a labelled variant; default: the preset's rates)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--limit-train", type=int, default=None)
    ap.add_argument("--counts", default="1,10,100,1000", help="labels per class for the label-efficiency probes")
    ap.add_argument("--timing-samples", type=int, default=5000)
    ap.add_argument("--probe-eval-every", type=int, default=5,
                    help="measure val/test accuracy every k probe epochs (and always at the last)")
    ap.add_argument("--ckpt-dir", default=None)
    ap.add_argument("--pictures", default=None, help="folder for filters / receptive fields / UMAP / winners")
    ap.add_argument("--probe-flip", action="store_true",
                    help="train the probes with random horizontal flips (features of mirrored training images are "
                         "cached too; the authors' probe, Nimmo & Mondragon 2025)")
    ap.add_argument("--hebb-flip", action="store_true",
                    help="random horizontal flips in the unsupervised epoch (the authors' training loader)")
    ap.add_argument("--zca-standardize", action="store_true",
                    help="standardise each pixel before the ZCA (the authors' whitening; a labelled variant)")
    ap.add_argument("--zca-samples", type=int, default=None, help="images the ZCA is fitted on (default 5000)")
    ap.add_argument("--extra-probe-epochs", type=int, default=None,
                    help="also fit an all-label probe for this many epochs on the same cached features "
                         "(its own record, params.probe_epochs; pick between them on validation only)")
    ap.add_argument("--update-dtype", default=None, choices=["float32", "bfloat16"],
                    help="precision of the update's correlation product (default: float32, the weights')")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    from neuroplastic.hebbian.models import preset_info

    info = preset_info(a.preset)
    bs = a.batch_size or info.batch_size
    counts = tuple(int(c) for c in a.counts.split(",") if c)
    records: list[dict] = []
    for seed in (int(s) for s in a.seeds.split(",")):
        t_all = time.perf_counter()
        bundle = hc.prepare(a.dataset, a.root, seed, a.device, limit_train=a.limit_train)
        params = {"preset": a.preset, "width": a.width}
        opts = {"probe_epochs": a.probe_epochs, "probe_flip": a.probe_flip, "lr_scale": a.lr_scale,
                "hebb_flip": a.hebb_flip, "zca_standardize": a.zca_standardize, "zca_samples": a.zca_samples,
                "update_dtype": a.update_dtype}
        params.update({k: v for k, v in opts.items() if v})  # only the options given (flags when set)
        learner = HebbianCNN(in_shape=bundle.in_shape, n_classes=bundle.n_classes, seed=seed,
                               **params).to(a.device)
        ckpt = Path(a.ckpt_dir) / f"{a.dataset}_{a.preset}_s{seed}.pt" if a.ckpt_dir else None
        def log(m: str, _seed: int = seed) -> None:
            print(f"[{time.strftime('%H:%M:%S')}] {a.dataset} {a.preset} s{_seed}: {m}", flush=True)

        hebb_s = hc.hebbian_epoch(learner, bundle, bs, seed, ckpt, log=log)
        sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
        sync()
        nt = min(a.timing_samples, len(bundle.train))
        fwd_s = hc.forward_seconds(learner, bundle.train.x[:nt], bs)
        sync()
        fwd_epoch_s = fwd_s * len(bundle.train) / nt
        t0 = time.perf_counter()
        feats = {s: hc.cache(learner, getattr(bundle, s).x) for s in ("train", "val", "test")
                 if getattr(bundle, s) is not None}
        if learner.probe_flip:
            feats["train_flip"] = hc.cache(learner, bundle.train.x.flip(-1))
        sync()
        cache_s = time.perf_counter() - t0
        log(f"hebbian epoch {hebb_s:.0f}s, forward (est. epoch, bs {bs}) {fwd_epoch_s:.0f}s, ratio "
            f"{hebb_s / fwd_epoch_s:.2f}; caching {cache_s:.0f}s; feature dim {feats['train'].shape[1]}")
        base = hc.base_record("hebbian-cnn", a.dataset, a.preset, seed, bs, params, a.device)
        base.update(hebbian_seconds=round(hebb_s, 1), forward_epoch_seconds=round(fwd_epoch_s, 1),
                    hebb_over_forward=round(hebb_s / fwd_epoch_s, 3), cache_seconds=round(cache_s, 1),
                    feature_dim=int(feats["train"].shape[1]), n_params=learner.n_params(),
                    **learner.final_metrics(bundle))
        if a.pictures:
            from neuroplastic.hebbian import viz

            pics = viz.report_figures(learner, bundle, Path(a.pictures) / f"{a.dataset}_{a.preset}_s{seed}")
            base["pictures"] = {k: str(v) for k, v in pics.items() if v is not None}
        recs = hc.probe_records(learner, bundle, feats, base=base, seed=seed, counts=counts, log=log,
                                 eval_every=a.probe_eval_every)
        if a.extra_probe_epochs:
            xbase = dict(base, params=dict(params, probe_epochs=a.extra_probe_epochs),
                         variant=f"probe {a.extra_probe_epochs} epochs")
            recs += hc.probe_records(learner, bundle, feats, base=xbase, seed=seed, counts=(), log=log,
                                     eval_every=a.probe_eval_every, epochs=a.extra_probe_epochs)
        total = time.perf_counter() - t_all
        for r in recs:
            r["train_seconds"] = round(hebb_s, 1)
            r["protocol_seconds"] = round(total, 1)
        records.extend(recs)
        hc.write(records, a.out)
        if ckpt is not None and ckpt.exists():
            os.remove(ckpt)
        log(f"done in {total:.0f}s: test {recs[0]['test_acc']:.4f}")
        del feats


if __name__ == "__main__":
    main()
