#!/usr/bin/env bash
# The whole suite, as CI runs it: type checks, the Python tests, then the Node tests against real
# servers, SQLite files, usearch indexes, ONNX models and posters from ../shared/posters.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== type check (src, test, bench)"
npx tsc -p tsconfig.json
npx tsc -p tsconfig.check.json

echo "== Python environment (training/requirements.lock)"
bash scripts/python-env.sh

echo "== Python tests (training/tests)"
.venv/bin/python -m pytest training/tests -q -p no:cacheprovider

echo "== Node tests (test/)"
node --import tsx --test --test-concurrency=1 --test-reporter=spec test/*.test.ts
