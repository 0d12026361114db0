#!/usr/bin/env bash
# The checks that need a CUDA machine, in at most 9 minutes (bench, not a test):
#
#   bash bench/gpu_check.sh               # on a CUDA machine
#   bash bench/gpu_check.sh --dry_run     # every step, tiny sizes, on the CPU (tests/test_gpu_check.py, < 60 s)
#
# 1. speed:    BERT-base MLM pre-training in bf16, uer tokens/s beside transformers.BertForMaskedLM (bench/gpu_check.py speed)
# 2. torchrun: `torchrun --nproc_per_node 1 pretrain.py` for a few steps (People's Daily sample, mlm target)
# 3. fastbert: the FastBERT main job (MiniLM on tweets) shortened, on --device cuda
# 4. sweep:    the batched early-exit sweep of that model on the GPU (bench/gpu_check.py sweep)
# 5. runtimes: that model on eager, fused, onnxruntime (ONNX Runtime's CUDA provider, fp32 graphs,
#              where the installed onnxruntime has it; else the line says why not) and auto's pick,
#              full model and early exit at batch 1 and 32 (bench/gpu_check.py runtimes)
#
# Every step runs under its own `timeout` (the five add up to 9 minutes); each command is printed
# before it runs, its output goes to <out_dir>/<step>.log, and a summary line per step ends the run.
# Exit status: 0 when every step passed, 1 otherwise; 2 for a bad flag or a missing prerequisite.
set -u -o pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: bash bench/gpu_check.sh [--dry_run] [--out_dir DIR]" >&2; exit 2; }
DRY=0
OUT=out/gpu_check
while [ $# -gt 0 ]; do
  case "$1" in
    --dry_run) DRY=1; shift ;;
    --out_dir) [ $# -ge 2 ] || usage; OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check.sh: error: unknown argument '$1'" >&2; usage ;;
  esac
done
PY=${PYTHON:-python3}
mkdir -p "$OUT" || { echo "gpu_check.sh: error: --out_dir $OUT: cannot create it" >&2; exit 2; }

if [ "$DRY" = 1 ]; then
  DEVICE=cpu
  SPEED_ARGS=(--size tiny --precision bf16 --batch_size 4 --seq_length 32 --steps 2 --rounds 1 --vocab_size 1200)
  PT_STEPS=3; PT_BATCH=4; PT_SEQ=32; PT_CONFIG=tests/data/pretrain_mlm.yaml
  CORPUS=corpora/samples/zh_documents.txt; VOCAB=models/google_zh_vocab.txt
  FB_ARGS=(--config_path tests/data/pretrain_mlm.yaml --vocab_path tests/data/fastbert_vocab.txt
           --train_path tests/data/fastbert_train.tsv --dev_path tests/data/fastbert_dev.tsv
           --test_path tests/data/fastbert_test.tsv --train_samples 32 --dev_samples 8 --epochs_num 1
           --distill_epochs_num 1 --batch_size 16 --seq_length 16 --speed 0,1 --timing_samples 4 --threads 2)
  TEST=tests/data/fastbert_test.tsv
  SWEEP_ARGS=(--batch_size 8 --timing_samples 4 --repeats 1)
  RUNTIME_ARGS=(--batch_size 8 --timing_samples 4 --repeats 1)
  LIMITS=(120 120 120 120 120)  # a loaded CPU is slow to start python; the sizes are tiny
else
  DEVICE=cuda
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check.sh: error: torch sees no CUDA device (run it on a CUDA machine, or pass --dry_run)" >&2; exit 2
  fi
  SPEED_ARGS=(--size base --precision bf16 --batch_size 32 --seq_length 128 --steps 10 --rounds 3)
  PT_STEPS=30; PT_BATCH=32; PT_SEQ=128; PT_CONFIG=models/bert/tiny.yaml
  CORPUS=corpora/samples/zh_documents.txt; VOCAB=models/google_zh_vocab.txt
  [ -f data/corpora/peoples_daily.txt ] && CORPUS=data/corpora/peoples_daily.txt
  FB_ARGS=(--pretrained_model_path models/minilm/model.pt --config_path models/bert/minilm_l6_h384.yaml
           --vocab_path models/minilm/vocab.txt --train_path data/tweets/train.tsv --dev_path data/tweets/dev.tsv
           --test_path data/tweets/test.tsv --train_samples 3000 --dev_samples 1000 --epochs_num 1
           --distill_epochs_num 1 --batch_size 32 --seq_length 64 --learning_rate 1e-4 --distill_learning_rate 5e-4
           --speed 0,0.1,...,1 --timing_samples 512)
  TEST=data/tweets/test.tsv
  SWEEP_ARGS=(--batch_size 32 --timing_samples 1024 --repeats 3)
  RUNTIME_ARGS=(--batch_size 32 --timing_samples 256 --repeats 2)
  LIMITS=(120 90 210 60 60)
  for need in models/minilm/model.pt models/minilm/vocab.txt data/tweets/train.tsv "$VOCAB"; do
    if [ ! -f "$need" ]; then
      echo "gpu_check.sh: error: $need is missing: run bash scripts/setup.sh (or scripts/prepare.py and scripts/build_sentiment_datasets.py --only tweets) first" >&2
      exit 2
    fi
  done
fi
[ -f "$VOCAB" ] || { echo "gpu_check.sh: error: $VOCAB is missing: run python scripts/prepare.py first" >&2; exit 2; }

declare -a SUMMARY
FAILED=0
step() {  # step NAME LIMIT_S command...
  local name=$1 limit=$2; shift 2
  local log="$OUT/$name.log"
  printf '$' ; printf ' %q' "$@"; printf '\n'
  local start=$SECONDS
  timeout --kill-after 10 "$limit" "$@" >"$log" 2>&1
  local rc=$?
  local took=$((SECONDS - start))
  if [ $rc -eq 0 ]; then
    SUMMARY+=("$name: ok (${took} s)")
  else
    FAILED=1
    [ $rc -eq 124 ] && SUMMARY+=("$name: FAILED, over its ${limit} s limit (see $log)") \
                    || SUMMARY+=("$name: FAILED, exit $rc (see $log)")
    tail -n 5 "$log" | sed 's/^/    /'
  fi
}

step speed "${LIMITS[0]}" "$PY" bench/gpu_check.py speed --device "$DEVICE" "${SPEED_ARGS[@]}" --output "$OUT/speed.json"
grep -h "tokens/s" "$OUT/speed.log" 2>/dev/null | tail -n 1

# torchrun needs a dataset: a fresh one from the corpus, mlm processor (pretrain.py refuses to overwrite a run)
rm -rf "$OUT/dataset" "$OUT/pretrain"
step torchrun "${LIMITS[1]}" bash -c '
  "$0" preprocess.py --corpus_path "$1" --data_processor mlm --vocab_path "$2" --dataset_path "$3/dataset" \
      --seq_length "$4" --processes_num 1 --no_progress &&
  "$0" -m torch.distributed.run --standalone --nproc_per_node 1 pretrain.py --dataset_path "$3/dataset" \
      --config_path "$5" --set "target.components=[mlm]" --vocab_path "$2" --output_model_path "$3/pretrain/model.pt" \
      --total_steps "$6" --batch_size "$7" --report_steps 1 --save_checkpoint_steps "$6" --device "$8" --no_progress' \
  "$PY" "$CORPUS" "$VOCAB" "$OUT" "$PT_SEQ" "$PT_CONFIG" "$PT_STEPS" "$PT_BATCH" "$DEVICE"
grep -h "step $PT_STEPS:" "$OUT/torchrun.log" 2>/dev/null | tail -n 1

rm -rf "$OUT/fastbert"
step fastbert "${LIMITS[2]}" "$PY" run_fastbert.py "${FB_ARGS[@]}" --device "$DEVICE" \
  --output_model_path "$OUT/fastbert/model.pt" --report_path "$OUT/fastbert/report.json" --no_progress
step sweep "${LIMITS[3]}" "$PY" bench/gpu_check.py sweep --device "$DEVICE" --model "$OUT/fastbert/model.pt" \
  --test_path "$TEST" "${SWEEP_ARGS[@]}"
grep -h "largest speed" "$OUT/sweep.log" 2>/dev/null | tail -n 1
step runtimes "${LIMITS[4]}" "$PY" bench/gpu_check.py runtimes --device "$DEVICE" --model "$OUT/fastbert/model.pt" \
  --test_path "$TEST" "${RUNTIME_ARGS[@]}" --output "$OUT/runtimes.json"
grep -h "^  [a-z]" "$OUT/runtimes.log" 2>/dev/null | cut -c1-160

echo "gpu_check ($([ "$DRY" = 1 ] && echo 'dry run, cpu' || echo cuda)):"
printf '  %s\n' "${SUMMARY[@]}"
exit $FAILED
