#!/bin/sh
# How long a new user waits: from a fresh clone, with an empty pip cache and an empty
# ~/.cache/ragchat (so the first run exports the embedder and joins the bundled model), until
#   1. `make run` serves the page (GET / answers 200), and
#   2. `make test` starts testing (pytest prints "test session starts").
# Each step gets its own clone and its own empty caches; nothing outside $WORK is touched.
# "Models ready" includes, on this first start, joining and exporting the multilingual embedder.
#   bench/install_time.sh [WORK_DIR]          (STEPS=run: only the first)
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$(mktemp -d /tmp/ragchat-install.XXXXXX)}
PORT=${PORT:-7977}
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }

fresh() {  # fresh NAME: a clone and empty caches under $WORK/NAME
  rm -rf "$WORK/$1"; mkdir -p "$WORK/$1"
  git clone -q "$REPO" "$WORK/$1/ragchat"
  export PIP_CACHE_DIR="$WORK/$1/pip-cache" XDG_CACHE_HOME="$WORK/$1/cache"
}

fresh run
cd "$WORK/run/ragchat"
t0=$(now)
RAGCHAT_SERVER__PORT=$PORT setsid make run > "$WORK/run.log" 2>&1 &
pid=$!
until curl -sf -o /dev/null "http://127.0.0.1:$PORT/"; do
  kill -0 $pid 2>/dev/null || { echo "make run stopped early:"; tail -20 "$WORK/run.log"; exit 1; }
  sleep 1
done
run_s=$(since "$t0")
until curl -sf "http://127.0.0.1:$PORT/ragchat/status" | grep -q '"ready"'; do sleep 1; done
ready_s=$(since "$t0")
kill -TERM -$pid 2>/dev/null || true  # the whole process group (dash has no "kill --")
wait $pid 2>/dev/null || true

printf 'make run: page served after %.0f s, models ready after %.0f s\n' "$run_s" "$ready_s"
[ "${STEPS:-run test}" = run ] && exit 0

fresh test
cd "$WORK/test/ragchat"
t0=$(now)
setsid make test > "$WORK/test.log" 2>&1 &
pid=$!
until grep -q "test session starts" "$WORK/test.log"; do
  kill -0 $pid 2>/dev/null || { echo "make test stopped early:"; tail -20 "$WORK/test.log"; exit 1; }
  sleep 1
done
test_s=$(since "$t0")
kill -TERM -$pid 2>/dev/null || true  # the whole process group (dash has no "kill --")
wait $pid 2>/dev/null || true

printf 'make test: testing started after %.0f s\n' "$test_s"
printf '{"run_page_s": %.1f, "run_models_ready_s": %.1f, "test_start_s": %.1f}\n' "$run_s" "$ready_s" "$test_s"
