#!/usr/bin/env bash
# Spot check: CPU microseconds per request of one running process (all its threads).
# usage: native-bench/cpu-per-request.sh PID URL [DURATION] [WRK_SCRIPT]
#   e.g. native-bench/cpu-per-request.sh $(pgrep -f 'cli.js' | head -1) http://127.0.0.1:8080/small 5s
# Runs `wrk -t1 -c64` for DURATION (default 5s) and divides the process's user+system time
# over the run by the requests wrk completed. Steadier than RPS on a shared box; the method
# behind the before/after figures in the README.
set -euo pipefail
pid=${1:?PID}; url=${2:?URL}; dur=${3:-5s}; script=${4:-}
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
t0=$(ticks)
out=$(wrk -t1 -c64 -d"$dur" ${script:+-s "$script"} "$url")
t1=$(ticks)
req=$(awk '/requests in/ {print $1}' <<<"$out")
rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v n="$req" -v rps="$rps" \
  'BEGIN { printf "rps=%s cpu_us_per_req=%.2f\n", rps, t * 1e6 / hz / n }'
