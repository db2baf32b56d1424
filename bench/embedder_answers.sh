#!/bin/sh
# Answers with the two bundled embedders side by side, in one run (docs/ANSWERS.md, issue 19): RGB-zh and
# ClapNQ (40 questions each) and the PDF questions, one question per chat, through bench/conversation.sh.
# The RGB and ClapNQ stores are copies of bench/embedders.sh's ($E), so nothing is embedded twice.
#   bench/embedder_answers.sh            then   .venv/bin/python bench/answers_table.py $OUT/*.txt
# TAGS picks the runs: minilm (all-MiniLM-L6-v2, the default before) and gemma (embeddinggemma-300m, now).
set -eu
E=${E:-/tmp/ragchat-embedders}
OUT=${OUT:-/tmp/ragchat-answers}
QA=${QA:-../shared/data/qa}
export OUT
mkdir -p "$OUT"
for tag in ${TAGS:-minilm gemma}; do
  case $tag in minilm) model=all-MiniLM-L6-v2 ;; *) model=embeddinggemma-300m ;; esac
  for set in rgb_zh clapnq; do
    [ -d "$OUT/store-$set-$tag" ] || cp -r "$E/$set-$model" "$OUT/store-$set-$tag"
    RAGCHAT_EMBEDDING__MODEL=$model MODES=chat TAG=$tag bench/conversation.sh "$QA/$set" 40
  done
  RAGCHAT_EMBEDDING__MODEL=$model FILES=../shared/data/pdfs MODES=chat TAG=$tag bench/conversation.sh bench/data/pdf_qa
done
