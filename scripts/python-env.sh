#!/usr/bin/env bash
# Create (or bring up to date) the Python virtual environment used by training/.
#
#   scripts/python-env.sh            # venv at <repo>/.venv
#   MARQUEE_VENV=/path scripts/python-env.sh
#
# Idempotent: installs training/requirements.lock with --no-deps (the lock is the
# complete pinned list; see its header for why --no-deps) and records the lock's
# sha256 in a stamp file inside the venv. When the stamp matches, it does nothing.
# Prints nothing but errors, unless PYTHON_ENV_PROGRESS=1: then each step on stdout
# ("python-env: <step>", and pip's own lines, one "Collecting" per package), which
# the server reads as a job's progress (src/model/python.ts). Environment:
# MARQUEE_VENV (venv path), PYTHON (interpreter used to create the venv, default
# python3; must be 3.11).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MARQUEE_VENV:-$repo/.venv}"
lock="$repo/training/requirements.lock"
stamp="$venv/.marquee-lock.sha256"

[[ -f "$lock" ]] || { echo "python-env: lock file not found: $lock" >&2; exit 1; }
want="$(sha256sum "$lock" | cut -d' ' -f1)"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi

progress="${PYTHON_ENV_PROGRESS:-0}"
step() { if [[ "$progress" == 1 ]]; then echo "python-env: $1"; fi; }

if [[ ! -x "$venv/bin/python" ]]; then
  step "creating the venv"
  "${PYTHON:-python3}" -m venv "$venv" || { echo "python-env: could not create venv at $venv" >&2; exit 1; }
fi

# Lock changed (or first run): invalidate the stamp before installing, so an
# interrupted install is retried next time.
rm -f "$stamp"

step "installing $(grep -cvE '^[[:space:]]*(#|$)' "$lock") packages"
if [[ "$progress" == 1 ]]; then
  # pip's lines go out as they come (the caller counts them); errors as usual.
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install \
    --retries 0 --no-deps --progress-bar off -r "$lock" || { echo "python-env: pip install -r $lock failed" >&2; exit 1; }
  printf '%s\n' "$want" >"$stamp"
  exit 0
fi

# -qq: errors only (pip's warnings about mirror locations are noise here).
# PIP_DISABLE_PIP_VERSION_CHECK: no "new pip available" notice.
if ! out="$(PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install \
      --retries 0 --no-deps --quiet --quiet -r "$lock" 2>&1)"; then
  printf '%s\n' "$out" >&2
  echo "python-env: pip install -r $lock failed" >&2
  exit 1
fi
# Surface genuine errors pip printed even when it exited 0.
if [[ -n "$out" ]]; then
  printf '%s\n' "$out" | grep -v -e 'is ignored: it is neither a file nor a directory' >&2 || true
fi

printf '%s\n' "$want" >"$stamp"
