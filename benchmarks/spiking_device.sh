#!/bin/bash
# One GPU call for the spiking benchmarks (Lin & Huang 2024): MNIST P-sweep + full rank + rate network,
# context tasks, all in parallel on one GPU (so train_seconds are for 8 concurrent runs sharing it).
# Everything (per-epoch logs, result JSONs, trained weights) is packed into $OUT/spiking_results.tgz
# (the device returns at most 8 files). Usage (repo root, MNIST in .data):
#   OUT=/tmp/out bash benchmarks/spiking_device.sh [epochs_mnist] [epochs_ctx] [time_limit_s]
set -u
E=${1:-15}; EC=${2:-6}; LIM=${3:-250}
W=/tmp/spiking_work; mkdir -p $W/models
export PYTHONPATH=src PYTHONUNBUFFERED=1 NEUROPLASTIC_DATA=.data
R="timeout $LIM python3 benchmarks/spiking_train.py --device cuda --threads 1 --save-dir $W/models"
M="--dataset mnist --hidden 200 --epochs $E --batch-size 256 --schedule cosine --lr 2e-3"
for P in 1 3 10 50; do
  $R --learner snn-mode $M --modes $P --out $W/spiking_mnist_P$P.json > $W/mnist_P$P.log 2>&1 &
done
$R --learner snn-fullrank $M --out $W/spiking_mnist_full.json > $W/mnist_full.log 2>&1 &
$R --learner rnn-mode --dataset mnist --hidden 200 --epochs 6 --batch-size 256 --schedule cosine --lr 2e-3 \
   --modes 3 --out $W/spiking_mnist_rate.json > $W/mnist_rate.log 2>&1 &
C="--hidden 100 --modes 3 --batch-size 100 --lr 3e-3 --schedule cosine --eval-limit 1000"
$R --learner snn-mode --dataset context $C --epochs $EC --out $W/spiking_context.json > $W/context.log 2>&1 &
$R --learner snn-mode --dataset context-switch $C --epochs $EC --out $W/spiking_context_switch.json > $W/context_switch.log 2>&1 &
wait
nvidia-smi --query-gpu=name --format=csv > $W/gpu.txt 2>&1
tar czf $OUT/spiking_results.tgz -C $W .
