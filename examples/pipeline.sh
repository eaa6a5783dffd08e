#!/usr/bin/env bash
# The MeCa steps one by one: what `meca sanitize DATA --out RUN` does, as a shell pipeline.
# Usage: examples/pipeline.sh DATA RUN [extra options for every data-reading step...]
set -euo pipefail
DATA=${1:?usage: pipeline.sh DATA RUN [options]}
RUN=${2:?usage: pipeline.sh DATA RUN [options]}
shift 2
EPOCHS=${EPOCHS:-20}
POISONED_EPOCHS=${POISONED_EPOCHS:-$(( (EPOCHS + 1) / 3 ))}  # round(EPOCHS / 3), as sanitize
POISONED_MIN_STEPS=${POISONED_MIN_STEPS:-550}                # sanitize's --poisoned-min-steps

meca train "$DATA" -o "$RUN/train-poisoned" --epochs "$POISONED_EPOCHS" --min-steps "$POISONED_MIN_STEPS" "$@"
meca score "$DATA" -m "$RUN/train-poisoned/model.safetensors" -o "$RUN/score" "$@"
meca partition "$RUN/score/scores.csv" -o "$RUN/partition"
meca enhance "$DATA" -m "$RUN/train-poisoned/model.safetensors" --clean-seed "$RUN/partition/clean_seed.idx" \
    -o "$RUN/enhance" "$@"
meca split "$DATA" -m "$RUN/enhance/model.safetensors" --scores "$RUN/score/scores.csv" -o "$RUN/split" "$@"
# Index lists travel through pipes: the clean split goes to training on stdin.
meca train "$DATA" --indices - -o "$RUN/train-clean" --epochs "$EPOCHS" "$@" < "$RUN/split/clean.idx"
meca relabel "$DATA" -m "$RUN/train-clean/model.safetensors" --suspected "$RUN/split/suspected.idx" \
    --enhanced-model "$RUN/enhance/model.safetensors" \
    -o "$RUN/relabel" "$@"
echo "suspected: $(wc -l < "$RUN/split/suspected.idx") of $(( $(wc -l < "$RUN/score/scores.csv") - 1 ))" >&2
