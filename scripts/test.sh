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

echo "== type check (src, test, bench)"
npx tsc -p tsconfig.json
npx tsc -p tsconfig.check.json

echo "== Dockerfile build stage, replayed outside Docker (scripts/docker-build-replay.sh)"
docker_status=0
bash scripts/docker-build-replay.sh > "$work/docker-build.log" 2>&1 || docker_status=$?
grep -E '^(==|--|   \(|docker-build-replay)' "$work/docker-build.log" || true
if (( docker_status != 0 )); then tail -n 40 "$work/docker-build.log"; fi

echo "== Python environment (training/requirements.lock)"
bash scripts/python-env.sh

echo "== Python tests (training/tests)"
py_status=0
.venv/bin/python -m pytest training/tests -q -p no:cacheprovider | tee "$work/pytest.log" || py_status=$?

echo "== Node tests (test/)"
node_status=0
node --import tsx --test --test-concurrency=1 \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$work/node.tap" \
  test/*.test.ts || node_status=$?

count() { grep -oE "[0-9]+ $1" "$work/pytest.log" | tail -1 | cut -d' ' -f1 || true; }
py_passed="$(count passed)"; py_failed="$(count failed)"; py_errors="$(count error)"
node_passed="$(grep -E '^# pass ' "$work/node.tap" | awk '{print $3}')"
node_failed="$(grep -E '^# fail ' "$work/node.tap" | awk '{print $3}')"
passed=$(( ${py_passed:-0} + ${node_passed:-0} ))
failed=$(( ${py_failed:-0} + ${py_errors:-0} + ${node_failed:-0} ))
echo "python: ${py_passed:-0} passed, $(( ${py_failed:-0} + ${py_errors:-0} )) failed; node: ${node_passed:-0} passed, ${node_failed:-0} failed"
echo "docker build stage: $( (( docker_status == 0 )) && echo replayed || echo FAILED )"
echo "total: $passed passed, $failed failed"
if (( py_status != 0 || node_status != 0 || docker_status != 0 )); then exit 1; fi
