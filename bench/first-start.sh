#!/usr/bin/env bash
# First start of a fresh clone: clones this checkout, runs `npm install`, then times `npm start`
# (its TypeScript build included) until GET /ready answers 200, and prints each start-up phase
# from the server's log with the seconds it began at. Results: bench/results/first-start.md.
#
#   bash bench/first-start.sh [clone dir (default: a new temporary dir)]
#
# The clone is not beside ../shared, so MARQUEE_CATALOG names the demo catalog of this checkout
# (override it to use another). NICE (default 10) is the niceness the install and the start run at.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
clone="${1:-$(mktemp -d)/marquee}"
catalog="${MARQUEE_CATALOG:-$(cd "$here/../shared/posters" && pwd)}"
port="${PORT:-18181}"
nice="${NICE:-10}"

git clone -q "$here" "$clone"
cd "$clone"
echo "== npm install ($clone)"
time nice -n "$nice" npm install --no-audit --no-fund >install.log 2>&1

echo "== npm start until /ready is 200 (MARQUEE_CATALOG=$catalog)"
rm -rf var
start=$(date +%s.%N)
MARQUEE_CATALOG="$catalog" PORT="$port" setsid nice -n "$nice" npm start >start.log 2>&1 &
pid=$!
trap 'kill -- -$pid 2>/dev/null || true' EXIT
until ready="$(curl -sf "http://127.0.0.1:$port/ready")"; do
  kill -0 $pid 2>/dev/null || { echo "the server exited:"; tail -20 start.log; exit 1; }
  sleep 0.25
done
end=$(date +%s.%N)
echo "ready $(echo "$end - $start" | bc) s after npm start: $ready"
# Each phase's first line (and a progress line's last), seconds after npm start.
node -e '
  const start = Number(process.argv[1]) * 1000;
  const seen = new Set();
  for (const line of require("fs").readFileSync("start.log", "utf8").split("\n")) {
    if (!line.startsWith("{")) continue;
    const e = JSON.parse(line);
    if (e.reqId || (e.done !== undefined && e.done !== e.total)) continue;
    const key = e.msg.replace(/\d+/g, "#");
    if (seen.has(key)) continue;
    seen.add(key);
    const extra = ["taken", "verified", "embedded", "shipped", "distrusted", "ms", "added"].filter((k) => e[k] !== undefined).map((k) => `${k}=${e[k]}`).join(" ");
    console.log(`${((e.time - start) / 1000).toFixed(1).padStart(7)} s  ${e.msg.slice(0, 100)}${extra ? `  (${extra})` : ""}`);
  }
' "$start"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
