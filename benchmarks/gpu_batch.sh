#!/usr/bin/env bash
# The image work that wants a GPU, as one batch sized for a short loan of one (about 9 minutes on an H100 with the
# defaults below, an estimate). Run it from the repository root:
#
#   bash benchmarks/gpu_batch.sh DATA_DIR OUT_DIR
#
# DATA_DIR holds mnist/ (the four official MNIST files) and binarized_mnist/binarized_mnist.npz (the fixed
# binarisation; rlgen checks both against their published checksums); the development machines have both in
# ../shared/data. In order:
#   1. tests/test_gpu.py: every model trains on CUDA and resumes on the CPU;
#   2. the GPU speed tables: vision_gan.py speed (one epoch of each GAN) and vision_likelihood.py's models against
#      their straightforward twins;
#   3. side by side on the one GPU, each process stopped by --max-minutes TRAIN_MINUTES after the epoch that passes
#      it: ssgan at its configured 300 epochs (one run per seed in SSGAN_SEEDS), infogan at 40 (INFOGAN_SEEDS), both
#      on the complete MNIST (issue #21), and PixelCNN, the Diagonal BiLSTM and VAE + IAF on the binarised MNIST
#      (issue #22's nats targets);
#   4. their tables (vision_gan.py --from-runs; vision_likelihood.py --from-runs on the 10,000 test images, the
#      VAE's log p(x) with k = IW_SAMPLES) and runs.tgz, the run directories without their checkpoints
#      and TensorBoard files.
# OUT_DIR gets at most eight files: batch.log, test_gpu.log, the JSON tables and runs.tgz. Where the tree has no .git,
# set RLGEN_COMMIT to the commit it was copied from: the tables and runs record it. SMOKE=1 DEVICE=cpu checks this
# script on a CPU in a few minutes (1,024 training images, tiny likelihood models, TRAIN_MINUTES=0.05 suits it,
# with IW_SAMPLES=2).
set -uo pipefail

if [ $# -ne 2 ]; then
    echo "usage: bash benchmarks/gpu_batch.sh DATA_DIR OUT_DIR" >&2
    exit 2
fi
DATA_DIR=$1
OUT_DIR=$2
PYTHON=${PYTHON:-python3}
TRAIN_MINUTES=${TRAIN_MINUTES:-4}
SSGAN_SEEDS=${SSGAN_SEEDS-"0 1 2"}  # empty: none
INFOGAN_SEEDS=${INFOGAN_SEEDS-"3 4 5"}
IW_SAMPLES=${IW_SAMPLES:-1000}
DEVICE=${DEVICE:-cuda}
limit=() tiny=() no_eval=() eval_images=10000
if [ "${SMOKE:-0}" = 1 ]; then
    limit=(--limit-images 1024) tiny=(--tiny --speed-rounds 1) no_eval=(--no-evaluate --n-samples 4) eval_images=200
fi
# An epoch that ends long after --max-minutes (a slow model's) is cut by SIGTERM 90 s later: the run checkpoints
# where it is, and the likelihood table evaluates that checkpoint.
hard_limit=$(awk "BEGIN { print int($TRAIN_MINUTES * 60 + 90) }")
for need in mnist/train-images-idx3-ubyte.gz binarized_mnist/binarized_mnist.npz; do
    if [ ! -f "$DATA_DIR/$need" ]; then
        echo "gpu_batch.sh: no $DATA_DIR/$need; pass the folder that holds mnist/ and binarized_mnist/" >&2
        exit 2
    fi
done
mkdir -p "$OUT_DIR"
RUNS=$(mktemp -d)  # the run directories: large checkpoints, so outside OUT_DIR
trap 'rm -rf "$RUNS"' EXIT
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
exec > >(tee -a "$OUT_DIR/batch.log") 2>&1

step() { echo "=== $(date -u +%H:%M:%S) $*"; }
data=(--dataset mnist --data-dir "$DATA_DIR" "${limit[@]}")

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

step "3. ssgan seeds $SSGAN_SEEDS, infogan seeds $INFOGAN_SEEDS, the likelihood models: $TRAIN_MINUTES min each"
pids=()
train() {  # train LOG ARGS...: one rlgen training in the background, under the hard limit
    local log=$1
    shift
    timeout "$hard_limit" $PYTHON -m rlgen.run "$@" --device "$DEVICE" --max-minutes "$TRAIN_MINUTES" \
        > "$RUNS/$log" 2>&1 &
    pids+=($!)
}
for seed in $SSGAN_SEEDS; do
    train "ssgan-s$seed.log" ssgan "${data[@]}" --seed "$seed" --epochs 300 --out "$RUNS/gan" --sample-every 50
done
for seed in $INFOGAN_SEEDS; do
    train "infogan-s$seed.log" infogan "${data[@]}" --seed "$seed" --epochs 40 --out "$RUNS/gan" --sample-every 10
done
binarised=(--dataset binarized_mnist --data-dir "$DATA_DIR" "${limit[@]}" --epochs 500 --out "$RUNS/likelihood"
           --sample-every 1000 "${no_eval[@]}")
train pixelcnn.log pixelcnn "${binarised[@]}"
train diagbilstm.log pixelrnn --variant diagbilstm "${binarised[@]}"
train vae-iaf.log vae --iaf-steps 2 --iw-samples 1 "${binarised[@]}"
for pid in "${pids[@]}"; do wait "$pid" || echo "a training exited with code $? (its log is in runs.tgz)"; done

step "4. tables"
for command in ssgan infogan; do
    runs=$(find "$RUNS/gan" -maxdepth 2 -name summary.json -path "*/$command-*" -printf '%h\n' | sort)
    # shellcheck disable=SC2086  # one argument per run directory
    [ -n "$runs" ] && $PYTHON benchmarks/vision_gan.py "$command" --dataset mnist --from-runs $runs \
        --results "$OUT_DIR"
done
runs=$(find "$RUNS/likelihood" -maxdepth 3 -name latest.json -printf '%h\n' | xargs -r -n1 dirname | sort | paste -sd,)
[ -n "$runs" ] && $PYTHON benchmarks/vision_likelihood.py --skip-speed --from-runs "$runs" --eval-images $eval_images \
    --iw-samples "$IW_SAMPLES" --device "$DEVICE" --out "$OUT_DIR"
tar -czf "$OUT_DIR/runs.tgz" -C "$RUNS" --exclude=checkpoints --exclude=tb .  # progress.csv has the metrics
step "done: $(ls "$OUT_DIR" | tr '\n' ' ')"
