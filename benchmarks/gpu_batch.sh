#!/usr/bin/env bash
# The image work that wants a GPU, as one batch sized for a short loan of one (about 9 minutes on an H100 with the
# defaults below). Run it from the repository root:
#
#   bash benchmarks/gpu_batch.sh MNIST_DIR OUT_DIR
#
# MNIST_DIR holds mnist_partial.npz (x_train/y_train/x_test/y_test; the development machines have it in
# ../shared/data/mnist). In order:
#   1. tests/test_gpu.py: every model trains on CUDA and resumes on the CPU;
#   2. the GPU speed tables: vision_gan.py speed (one epoch of each GAN) and vision_likelihood.py's models against
#      their straightforward twins;
#   3. side by side on the one GPU, each process stopped by --max-minutes TRAIN_MINUTES after the epoch that passes
#      it: ssgan at its configured 300 epochs (one run per seed in SSGAN_SEEDS) and infogan at 40 (INFOGAN_SEEDS);
#   4. their tables (vision_gan.py --from-runs) and runs.tgz, the run directories without their checkpoints.
# OUT_DIR gets at most eight files: batch.log, test_gpu.log, the JSON tables and runs.tgz. Where the tree has no .git,
# set RLGEN_COMMIT to the commit it was copied from: the tables and runs record it. SMOKE=1 DEVICE=cpu checks this
# script on a CPU in a few minutes (1,024 training images, tiny likelihood models, TRAIN_MINUTES=0.05 suits it).
set -uo pipefail

if [ $# -ne 2 ]; then
    echo "usage: bash benchmarks/gpu_batch.sh MNIST_DIR OUT_DIR" >&2
    exit 2
fi
MNIST_DIR=$1
OUT_DIR=$2
PYTHON=${PYTHON:-python3}
TRAIN_MINUTES=${TRAIN_MINUTES:-5}
SSGAN_SEEDS=${SSGAN_SEEDS:-"0 1 2"}
INFOGAN_SEEDS=${INFOGAN_SEEDS:-"3 4 5"}
DEVICE=${DEVICE:-cuda}
limit=() tiny=()
if [ "${SMOKE:-0}" = 1 ]; then limit=(--limit-images 1024) tiny=(--tiny --speed-rounds 1); fi
if [ ! -f "$MNIST_DIR/mnist_partial.npz" ]; then
    echo "gpu_batch.sh: no $MNIST_DIR/mnist_partial.npz; pass the folder that holds it" >&2
    exit 2
fi
mkdir -p "$OUT_DIR"
RUNS=$(mktemp -d)  # the run directories: large checkpoints, so outside OUT_DIR
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
exec > >(tee -a "$OUT_DIR/batch.log") 2>&1

step() { echo "=== $(date -u +%H:%M:%S) $*"; }
data=(--dataset mnist_partial.npz --data-dir "$MNIST_DIR" "${limit[@]}")

step "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
$PYTHON -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

step "1. tests/test_gpu.py"
RLGEN_TEST_DEVICE=$DEVICE $PYTHON -m pytest -q -rfE -p no:cacheprovider tests/test_gpu.py > "$OUT_DIR/test_gpu.log" 2>&1
echo "test_gpu.py exit code $?: $(tail -n 1 "$OUT_DIR/test_gpu.log")"

step "2. speed"
$PYTHON benchmarks/vision_gan.py speed "${data[@]}" --epochs 1 --device "$DEVICE" --out "$RUNS/speed" \
    --results "$OUT_DIR"
$PYTHON benchmarks/vision_likelihood.py --skip-train --speed-devices "$DEVICE" --speed-batch 64 --speed-steps 10 \
    "${tiny[@]}" --out "$OUT_DIR"

step "3. ssgan seeds $SSGAN_SEEDS, infogan seeds $INFOGAN_SEEDS, $TRAIN_MINUTES min each, side by side"
pids=()
for seed in $SSGAN_SEEDS; do
    $PYTHON -m rlgen.run ssgan "${data[@]}" --seed "$seed" --epochs 300 --device "$DEVICE" --out "$RUNS/gan" \
        --max-minutes "$TRAIN_MINUTES" --sample-every 50 > "$RUNS/ssgan-s$seed.log" 2>&1 &
    pids+=($!)
done
for seed in $INFOGAN_SEEDS; do
    $PYTHON -m rlgen.run infogan "${data[@]}" --seed "$seed" --epochs 40 --device "$DEVICE" --out "$RUNS/gan" \
        --max-minutes "$TRAIN_MINUTES" --sample-every 10 > "$RUNS/infogan-s$seed.log" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || echo "a training exited with code $? (its log is in runs.tgz)"; done

step "4. tables"
for command in ssgan infogan; do
    runs=$(find "$RUNS/gan" -maxdepth 2 -name summary.json -path "*/$command-*" -printf '%h\n' | sort)
    # shellcheck disable=SC2086  # one argument per run directory
    [ -n "$runs" ] && $PYTHON benchmarks/vision_gan.py "$command" --dataset mnist_partial.npz --from-runs $runs \
        --results "$OUT_DIR"
done
tar -czf "$OUT_DIR/runs.tgz" -C "$RUNS" --exclude=checkpoints .
step "done: $(ls "$OUT_DIR" | tr '\n' ' ')"
