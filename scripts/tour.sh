#!/usr/bin/env bash
# A new user's tour of every command at small size (about 4 minutes on 2 cores), run from
# the repository after `bash scripts/setup.sh`: `bash scripts/tour.sh > tour.log`. Each command
# prints its last lines and its exit status; 2 (bad input) and 3 (reproduce outside its
# tolerance, expected on tiny data) are intended.
set -uo pipefail
N=.venv/bin/noisyfit
export OMP_NUM_THREADS=2
run() { echo; echo "### $*"; local t0=$SECONDS; "$@" 2>&1 | tail -${TAIL:-6}; echo "### exit ${PIPESTATUS[0]} in $((SECONDS-t0)) s"; }
run $N list
TAIL=4 run $N train --epochs 2 --train-subset 5000 --out runs/t --name a
run ls runs/t/a runs/t/a/report
run $N report runs/t/a
run $N train --resume runs/t/a
run $N train --epochs 0
run $N train --dataset cifar10
run $N find-issues --method cv --folds 2 --epochs 2 --train-subset 5000 --out runs/fi --name cv
run head -3 runs/fi/cv/label_issues.csv
run $N find-issues --method coteaching --epochs 3 --train-subset 3000 --out runs/fi --name ct
run $N noise --out runs/noise --dataset fashion-mnist --noise pair --noise-rate 0.4
run $N convert --out runs/bin --dataset fashion-mnist --n-batches 2
TAIL=12 run $N bench benchmarks/sweeps/quick.yaml --jobs 2
run $N reproduce --list
run $N reproduce incv-cifar10-sym-0.5 --override dataset=fashion-mnist model=cnn-tiny epochs=1 train_subset=2000 test_subset=1000 method_options='{cv_epochs: 1, iterations: 1}'
TAIL=12 run $N theory --train-subset 4000 --epochs 2 --model mlp --noise symmetric --noise-rate 0.5 --out runs/theory
TAIL=8 run $N clean --method incv --train-subset 3000 --epochs 2 --model mlp --noise symmetric --noise-rate 0.5 --out runs/clean --method-options iterations 2
TAIL=8 run $N selfie-cli 0 fashion-mnist mlp SELFIE pair 0.4 runs/selfie --epochs 3 --warm-up 1 --restart 1 --train-subset 3000 --no-progress
run ls runs/selfie
TAIL=8 run $N ieg --dataset fashion-mnist_uniform_0.8 --network-name cnn-small --max-iteration 100 --probe-dataset-hold-ratio 0.01 --train-subset 3000 --checkpoint-path runs/ieg --no-progress
TAIL=8 run $N ieg --dataset fashion-mnist_uniform_0.8 --network-name cnn-small --probe-dataset-hold-ratio 0.01 --train-subset 3000 --checkpoint-path runs/ieg --mode evaluation
TAIL=12 run $N demo --methods standard coteaching --override train_subset=3000 epochs=4
