#!/bin/bash
# One GPU lease, several calls: ship MNIST and the CIFAR-10 tarball (in chunks, since one call carries at most
# 64 MiB), launch the MNIST and CIFAR-10 benchmark runs as detached jobs (setsid: they outlive the call that
# started them while the machine stays warm), poll them, and pack their JSONs into $OUT/gpu.tgz.
# Usage (repo root on the device machine; chunks carried under .dev/):
#   bash benchmarks/device_session.sh recv c0          # keep carried chunk .dev/c0 under /tmp/chunks
#   bash benchmarks/device_session.sh mnist            # MNIST from .dev/mnist; launch the MNIST jobs
#   bash benchmarks/device_session.sh cifar EPOCHS MIN # join the chunks, verify, launch the CIFAR-10 jobs
#   bash benchmarks/device_session.sh hopt             # join/verify the chunks; launch CIFAR-10 `optimal` variants
#   bash benchmarks/device_session.sh poll [SECONDS]   # wait, print progress, pack results into $OUT
set -u
W=/tmp/gpu; D=/tmp/data; mkdir -p $W/logs $D /tmp/chunks
export PYTHONPATH=src PYTHONUNBUFFERED=1 NEUROPLASTIC_DATA=$D NEUROPLASTIC_COMMIT=${NEUROPLASTIC_COMMIT:-}
job() {  # job NAME command...: detached, logged
  local n=$1; shift
  setsid nohup "$@" > $W/logs/$n.log 2>&1 < /dev/null &
}
cifar_data() {  # join the carried chunks into the data root once, and print the checksum to compare
  mkdir -p $D/cifar-10
  [ -f $D/cifar-10/cifar-10-binary.tar.gz ] || cat /tmp/chunks/c0 /tmp/chunks/c1 /tmp/chunks/c2 > $D/cifar-10/cifar-10-binary.tar.gz
  sha256sum $D/cifar-10/cifar-10-binary.tar.gz
}
case "$1" in
recv)
  cp .dev/$2 /tmp/chunks/ && ls -l /tmp/chunks ;;
mnist)
  mkdir -p $D/mnist && cp .dev/mnist/* $D/mnist/
  BP="python3 benchmarks/hebbian_bp.py --dataset mnist --preset softhebb --root $D --device cuda --threads 1"
  for s in 0 1 2; do
    job bp_mnist_all_s$s $BP --seeds $s --counts all --eval-every 5 --out $W/hebbian_bp_mnist_all_s$s.json
  done
  job bp_mnist_1000 $BP --seeds 0,1,2 --counts 1000 --out $W/hebbian_bp_mnist_1000.json
  job bp_mnist_small $BP --seeds 1,2 --counts 1,10,100 --out $W/hebbian_bp_mnist_small_s12.json
  for s in 0 1 2; do
    job pc_mnist_s$s python3 benchmarks/dll_run.py --dataset mnist --preset cnn-mnist --learner pc --epochs 10 \
      --seed $s --device cuda --max-minutes 22 --out $W/dll_cnn_mnist_pc_s$s.json
  done
  nvidia-smi --query-gpu=name,memory.used --format=csv ;;
cifar)
  E=$2; M=$3
  cifar_data
  R="python3 benchmarks/dll_run.py --dataset cifar-10 --preset cnn-cifar --epochs $E --seed 0 --normalize --device cuda --max-minutes $M"
  for l in dll dll-fa bp fa pc; do
    job dll_cifar_$l $R --learner $l --out $W/dll_cnn_cifar10_${l}_gpu_s0.json
  done
  for lr in 1.5e-4 5e-4 1.5e-3 5e-3; do
    job dll_cifar_lr$lr $R --learner dll --lr $lr --out $W/dll_cnn_cifar10_dll_lr${lr}_gpu_s0.json
  done
  job hopt_flip python3 benchmarks/hebbian_protocol.py --dataset cifar-10 --preset optimal --probe-flip --seeds 0 \
    --counts 10,100 --root $D --device cuda --threads 1 --ckpt-dir $W/ck_hopt --out $W/hebbian_cifar10_optimal_flip.json
  job bp_cifar_all python3 benchmarks/hebbian_bp.py --dataset cifar-10 --preset softhebb --root $D --device cuda \
    --threads 1 --epochs $E --counts all --eval-every 2 --ckpt-dir $W/ck_bpc --out $W/hebbian_bp_cifar10_all_gpu.json ;;
hopt)  # labelled variants of `optimal` with the flip-augmented probe, selected on validation only
  cifar_data
  HP="python3 benchmarks/hebbian_protocol.py --dataset cifar-10 --preset optimal --probe-flip --counts 10 \
    --root $D --device cuda --threads 1"
  for ls in 0.5 2; do job hopt_lr$ls $HP --seeds 0 --lr-scale $ls --ckpt-dir $W/ck_hopt_lr$ls --out $W/hebbian_cifar10_optimal_lr$ls.json; done
  job hopt_p40 $HP --seeds 0 --probe-epochs 40 --ckpt-dir $W/ck_hopt_p40 --out $W/hebbian_cifar10_optimal_p40.json
  job hopt_s1 $HP --seeds 1 --ckpt-dir $W/ck_hopt_s1 --out $W/hebbian_cifar10_optimal_flip_s1.json ;;
poll)
  sleep ${2:-0}
  for f in $W/logs/*.log; do echo "== $(basename $f): $(grep -v '^\s*$' $f | tail -c 300 | tr '\r' '\n' | tail -2)"; done
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  (nvidia-smi --query-gpu=name --format=csv,noheader) > $W/gpu.txt
  tar czf $OUT/gpu.tgz -C $W --exclude='ck_*' . && ls -l $OUT ;;
esac
