#!/usr/bin/env bash
# Load runs with real clients against the `hyper_priority` example, on
# tokio and on multipool side by side (issue #16): wrk (HTTP/1.1,
# keep-alive) and h2load (HTTP/2 cleartext, prior knowledge), the same
# server code on each (`--tokio` serves the same routes with
# hyper-util's TokioExecutor and a tokio task per request).
#
#   bash compat/benches/load.sh            # 3 rounds, alternating
#   ROUNDS=1 PATH_=/health bash compat/benches/load.sh
#
# Installs wrk and h2load (Debian: wrk, nghttp2-client) if they are
# missing. Both servers run 2 workers; on a 2-core machine the clients
# share those cores, so compare the two runtimes with each other, in one
# run, never with figures from another machine. Not part of CI (about a
# minute per round).
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-3}
PATH_=${PATH_:-/hello}
WRK_ARGS=${WRK_ARGS:--t2 -c64 -d10s}
H2LOAD_ARGS=${H2LOAD_ARGS:--n 100000 -c 32 -m 10}

if ! command -v wrk >/dev/null 2>&1 || ! command -v h2load >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -q
    $sudo apt-get install -y -q wrk nghttp2-client
fi

cargo build --release -q -p multipool-compat --example hyper_priority --features hyper,tokio
server=target/release/examples/hyper_priority
port=3917

wait_for_port() {
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "the server did not start on port $1" >&2
    return 1
}

one() { # runtime round
    local runtime=$1 flag=""
    if [ "$runtime" = tokio ]; then flag="--tokio"; fi
    port=$((port + 1))
    "$server" $flag --addr "127.0.0.1:$port" >/dev/null &
    local pid=$!
    wait_for_port "$port"
    local url="http://127.0.0.1:$port$PATH_"
    # shellcheck disable=SC2086
    local wrk_out; wrk_out=$(wrk $WRK_ARGS "$url")
    # shellcheck disable=SC2086
    local h2_out; h2_out=$(h2load $H2LOAD_ARGS "$url")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    local wrk_rps wrk_errors wrk_p50 h2_rps h2_done h2_failed h2_errored
    wrk_rps=$(awk '/Requests\/sec/ {print $2}' <<<"$wrk_out")
    wrk_errors=$(awk '/Socket errors|Non-2xx/ {print}' <<<"$wrk_out" | tr '\n' ' ')
    wrk_p50=$(awk '/Latency/ {print $2; exit}' <<<"$wrk_out")
    h2_rps=$(awk '/^finished in/ {print $4}' <<<"$h2_out")
    h2_done=$(awk '/^requests:/ {print $8}' <<<"$h2_out")
    h2_failed=$(awk '/^requests:/ {print $10}' <<<"$h2_out")
    h2_errored=$(awk '/^requests:/ {print $12}' <<<"$h2_out")
    printf '%-9s round %s | wrk: %10s req/s, mean latency %8s, errors: %s| h2load: %10s req/s, %s succeeded, %s failed, %s errored\n' \
        "$runtime" "$2" "$wrk_rps" "$wrk_p50" "${wrk_errors:-none }" "$h2_rps" "$h2_done" "$h2_failed" "$h2_errored"
}

echo "wrk $WRK_ARGS; h2load $H2LOAD_ARGS; GET $PATH_; $(nproc) CPUs"
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then order="tokio multipool"; else order="multipool tokio"; fi
    for runtime in $order; do one "$runtime" "$round"; done
done
