#!/usr/bin/env bash
# Iterative (online) DPO: each round samples n responses per prompt from the current policy, scores
# them with the verifiable reward, keeps best-vs-worst pairs, and runs DPO from the current policy.
# Usage: examples/iterative_dpo.sh [ROUNDS]   (after examples/make_data.sh and SFT on arithmetic)
set -euo pipefail
ROUNDS=${1:-3}
MODEL=runs/sft_arithmetic/final
for r in $(seq 1 "$ROUNDS"); do
  alignkit rejection-sample --model.path "$MODEL" --data.train_files data/arith_prompts.jsonl \
    --data.max_samples 1024 --rollout.n_samples_per_prompt 8 --rollout.max_new_tokens 6 \
    --reward.rules exact --mode pairs --seed "$r" --output "runs/iter_dpo/round_$r/pairs.jsonl"
  alignkit dpo --model.path "$MODEL" --data.train_files "runs/iter_dpo/round_$r/pairs.jsonl" \
    --data.max_length 32 --train.max_steps 50 --train.batch_size 16 --train.micro_batch_size 16 \
    --train.lr 3e-5 --output_dir "runs/iter_dpo/round_$r"
  MODEL="runs/iter_dpo/round_$r/final"
done
echo "final policy: $MODEL"
