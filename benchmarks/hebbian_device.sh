#!/bin/bash
# One GPU call for the MNIST part of the Hebbian CNN issue: the `softhebb` and `optimal` protocols on seeds
# 0,1,2 (probe on all labels and on 1/10/100/1000 labels per class) and the backprop baseline of the same
# net on all labels and on 1/10/100/1000 labels per class, all in parallel on one GPU (so their seconds are
# for concurrent runs sharing it). Everything is packed into $OUT/hebbian_results.tgz.
# Usage (repo root, MNIST under .data/mnist):
#   OUT=/tmp/out bash benchmarks/hebbian_device.sh [time_limit_s] [device] [extra args, e.g. --limit-train 600]
set -u
LIM=${1:-540}; DEV=${2:-cuda}; shift 2 2>/dev/null; EXTRA="$*"
W=/tmp/hebbian_work; rm -rf $W; mkdir -p $W
export PYTHONPATH=src PYTHONUNBUFFERED=1 NEUROPLASTIC_DATA=.data NEUROPLASTIC_COMMIT=${NEUROPLASTIC_COMMIT:-}
P="timeout $LIM python3 benchmarks/hebbian_protocol.py --dataset mnist --root .data --device $DEV --threads 1"
for preset in softhebb optimal; do
  for s in 0 1 2; do
    $P --preset $preset --seeds $s $EXTRA --out $W/hebbian_mnist_${preset}_s$s.json > $W/${preset}_s$s.log 2>&1 &
  done
done
timeout $LIM python3 benchmarks/hebbian_bp.py --dataset mnist --root .data --device $DEV --threads 1 \
  --counts all,1,10,100,1000 $EXTRA --out $W/hebbian_bp_mnist.json > $W/bp.log 2>&1 &
wait
(nvidia-smi --query-gpu=name --format=csv || echo no-gpu) > $W/gpu.txt 2>&1
tar czf $OUT/hebbian_results.tgz -C $W .
