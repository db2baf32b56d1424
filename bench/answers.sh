#!/bin/sh
# Answer quality of the built-in models, side by side: `ragchat eval --answers` on each QA set for
# each model, in one run (docs/ANSWERS.md). Each set is ingested once into its own store under
# $OUT and reused by every model.
#   bench/answers.sh QA_DIR [LIMIT] [MODEL...]       e.g. bench/answers.sh ../shared/data/qa 20
# Extra settings go through RAGCHAT_* variables, e.g. RAGCHAT_CHAT__SOURCE_TOKENS=0; CLAPNQ_LIMIT
# asks more ClapNQ questions than LIMIT (ClapNQ holds answerable and unanswerable ones); SETS picks
# the sets (default "rgb_zh clapnq").
# Heavy runs take /tmp/ragchat-heavy.lock one at a time, so parallel jobs do not skew the timings.
set -eu
QA=${1:?usage: bench/answers.sh QA_DIR [LIMIT] [MODEL...]}
LIMIT=${2:-20}
shift $(( $# >= 2 ? 2 : 1 ))
MODELS=${*:-smollm2-135m qwen2.5-0.5b qwen2.5-1.5b}
OUT=${OUT:-/tmp/ragchat-answers}
mkdir -p "$OUT"
RAGCHAT=${RAGCHAT:-.venv/bin/ragchat}
for set in ${SETS:-rgb_zh clapnq}; do
  for model in $MODELS; do
    tag="$set.$model${TAG:+.$TAG}"
    echo "== $tag" >&2
    RAGCHAT_LLM__PROVIDER=llamacpp RAGCHAT_LLM__BUILTIN_MODEL=$model \
      flock /tmp/ragchat-heavy.lock "$RAGCHAT" eval "$QA/$set" --answers --json \
        --limit "$([ "$set" = clapnq ] && echo "${CLAPNQ_LIMIT:-$LIMIT}" || echo "$LIMIT")" \
        --store "$OUT/store-$set" --details "$OUT/$tag.jsonl" > "$OUT/$tag.txt"
    tail -n 1 "$OUT/$tag.txt"
  done
done
