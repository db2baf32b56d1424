#!/bin/sh
# One QA set asked one question per chat and as one conversation, side by side in one run
# (docs/ANSWERS.md, "Conversations"). The set is ingested once into a store under $OUT.
#   bench/conversation.sh QA_DIR [LIMIT]                       e.g. bench/conversation.sh ../shared/data/qa/rgb_zh 40
#   FILES=../shared/data/pdfs bench/conversation.sh bench/data/pdf_qa      (a set whose corpus is files)
# MODES="chat" runs only the first. TAG names the output files; RAGCHAT is the command to run (another checkout's, for a baseline); extra
# settings go through RAGCHAT_* variables. Heavy runs take /tmp/ragchat-heavy.lock one at a time.
set -eu
QA=${1:?usage: bench/conversation.sh QA_DIR [LIMIT]}
LIMIT=${2:-}
OUT=${OUT:-/tmp/ragchat-answers}
RAGCHAT=${RAGCHAT:-.venv/bin/ragchat}
set_name=$(basename "$QA")
mkdir -p "$OUT"
for mode in ${MODES:-chat conversation}; do
  tag="$set_name.$mode${TAG:+.$TAG}"
  echo "== $tag" >&2
  flock /tmp/ragchat-heavy.lock $RAGCHAT eval "$QA" --answers --json ${LIMIT:+--limit "$LIMIT"} \
    ${FILES:+--files "$FILES"} $([ "$mode" = conversation ] && echo --conversation) \
    --store "$OUT/store-$set_name${TAG:+-$TAG}" --details "$OUT/$tag.jsonl" > "$OUT/$tag.txt"
  tail -n 1 "$OUT/$tag.txt"
done
