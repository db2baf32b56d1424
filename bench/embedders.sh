#!/usr/bin/env bash
# Retrieval with the two bundled embedders side by side, in one run (issue 19; docs/RETRIEVAL.md):
# `ragchat eval` on each set, first with all-MiniLM-L6-v2 (the default before), then with
# embeddinggemma-300m (the default now), each into its own store under $OUT, so a second run reuses
# the stores (ingest_s is then 0: read it from the first run's log). Modes: hybrid (the default),
# plus dense, lexical and hybrid-fixed (hybrid without retrieval.adaptive_lexical) where MODES says so.
#   bench/embedders.sh ../shared/data/qa/xquad_zh2en ../shared/data/qa/rgb_zh ../shared/data/beir/scifact
set -euo pipefail
OUT=${OUT:-/tmp/ragchat-embedders}
MODELS=${MODELS:-"all-MiniLM-L6-v2 embeddinggemma-300m"}
MODES=${MODES:-hybrid}
RAGCHAT=${RAGCHAT:-.venv/bin/ragchat}
mkdir -p "$OUT"
for dir in "$@"; do
  set_name=$(basename "$dir")
  for model in $MODELS; do
    for mode in $MODES; do
      printf '%s\t%s\t%s\t' "$set_name" "$model" "$mode"
      adaptive=true; [ "$mode" = hybrid-fixed ] && adaptive=false
      RAGCHAT_EMBEDDING__MODEL=$model RAGCHAT_RETRIEVAL__ADAPTIVE_LEXICAL=$adaptive \
        $RAGCHAT --store "$OUT/$set_name-$model" eval "$dir" --mode "${mode%-fixed}" --json \
        2>>"$OUT/errors.log" | tail -1
    done
  done
done
