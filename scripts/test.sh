#!/usr/bin/env bash
# The whole suite, as CI runs it: type checks, the Python tests, then the Node tests against real
# servers, SQLite files, usearch indexes, ONNX models and posters from ../shared/posters, and the
# Dockerfile's build stage replayed outside Docker. Every test stage runs; the last lines total them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Every temporary file of the run (data dirs, catalogs, pytest's basetemp, training's scratch) goes
# under one folder that goes with the run: a suite that leaves gigabytes in /tmp fills a CI disk.
export TMPDIR="$work/tmp"
mkdir -p "$TMPDIR"

# The stages below that wait on one core (the image replay compiles with one, pip mostly waits on
# disk, the Node tests spend much of their time waiting on servers) run side by side: on two cores,
# one after the other took 28 minutes, near CI's limit. The type checks run beside the two installs,
# and the image replay goes on beside the tests (its output follows theirs).
echo "== Dockerfile build stage, replayed outside Docker (scripts/docker-build-replay.sh), and the Python environment (training/requirements.lock), beside the type checks"
docker_status=0
bash scripts/docker-build-replay.sh > "$work/docker-build.log" 2>&1 &
docker_pid=$!
python_env_status=0
bash scripts/python-env.sh > "$work/python-env.log" 2>&1 &
python_env_pid=$!

echo "== type check (src, test, bench, scripts), and no Promise left unawaited (scripts/check-unawaited.mjs)"
typecheck_status=0
{ npx tsc -p tsconfig.json && npx tsc -p tsconfig.check.json && node scripts/check-unawaited.mjs; } || typecheck_status=$?

wait "$python_env_pid" || python_env_status=$?
echo "== Python environment: its output"
cat "$work/python-env.log"
if (( typecheck_status != 0 || python_env_status != 0 )); then
  # The replay is waited for, not killed: a kill reaches its shell, not the npm and tsc beneath it,
  # which would go on writing into the folder the exit trap removes.
  wait "$docker_pid" || true
  echo "the type checks (status $typecheck_status) or the Python environment (status $python_env_status) failed"
  exit 1
fi
echo "== Python tests (training/tests) on one thread, beside the Node tests; their output follows the Node tests'"
(
  status=0
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python -m pytest training/tests -q -p no:cacheprovider > "$work/pytest.log" 2>&1 || status=$?
  echo "$status" > "$work/pytest.status"
) &
py_pid=$!

echo "== Node tests (test/)"
node_status=0
node --import tsx --test --test-concurrency=1 \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$work/node.tap" \
  test/*.test.ts || node_status=$?

# One suite, two backends (issue 17): the server suites that keep state run again with every server and
# command on PostgreSQL (test/support/backend.ts: a database per data dir on a throwaway cluster; a test
# reads what they stored through the stores, stateOf). test/stores.test.ts holds the stores themselves to
# one contract on both.
# Not here: what is about SQLite's own file or process (crash, full-disk, second-process, int8, live-catalog,
# migrations, state, index-build-thread, map-cache, vector-index, searcher-bounds), and five whose storage is
# incidental or covered by a suite here (swagger-ui, decode-budget, weights, parity; swagger-retrain, whose
# job the retrain suite runs on PostgreSQL): they pass on PostgreSQL, 2 minutes that CI's 30 do not have.
pg_suites=(admin api bad-input cli demo-page eval-cli figures fuzz-upload generated-client genre-head near-duplicates overload recommend report restart retrain search-by-id shipped-embeddings soak timeouts title-search tmdb-import)
echo "== Node tests on PostgreSQL (MARQUEE_TEST_BACKEND=postgres): ${pg_suites[*]}"
pg_suites=("${pg_suites[@]/#/test/}")
MARQUEE_TEST_BACKEND=postgres node --import tsx --test --test-concurrency=1 \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$work/node-pg.tap" \
  "${pg_suites[@]/%/.test.ts}" || node_status=$?

wait "$docker_pid" || docker_status=$?
echo "== Dockerfile build stage: its output"
grep -E '^(==|--|   \(|docker-build-replay)' "$work/docker-build.log" || true
if (( docker_status != 0 )); then tail -n 40 "$work/docker-build.log"; fi

wait "$py_pid" || true
py_status="$(cat "$work/pytest.status" 2>/dev/null || echo 1)"
echo "== Python tests (training/tests): their output"
cat "$work/pytest.log"

count() { grep -oE "[0-9]+ $1" "$work/pytest.log" | tail -1 | cut -d' ' -f1 || true; }
py_passed="$(count passed)"; py_failed="$(count failed)"; py_errors="$(count error)"
tally() { cat "$work/node.tap" "$work/node-pg.tap" 2>/dev/null | grep -E "^# $1 " | awk '{n += $3} END {print n + 0}'; }
node_passed="$(tally pass)"; node_failed="$(tally fail)"
pg_passed="$(grep -E '^# pass ' "$work/node-pg.tap" 2>/dev/null | awk '{print $3}' || true)"
passed=$(( ${py_passed:-0} + ${node_passed:-0} ))
failed=$(( ${py_failed:-0} + ${py_errors:-0} + ${node_failed:-0} ))
echo "python: ${py_passed:-0} passed, $(( ${py_failed:-0} + ${py_errors:-0} )) failed; node: ${node_passed:-0} passed (${pg_passed:-0} of them on PostgreSQL), ${node_failed:-0} failed"
echo "docker build stage: $( (( docker_status == 0 )) && echo replayed || echo FAILED )"
echo "total: $passed passed, $failed failed"
if (( py_status != 0 || node_status != 0 || docker_status != 0 )); then exit 1; fi
