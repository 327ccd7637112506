#!/usr/bin/env bash
# How multipool scales past 2 cores next to tokio, async-std and smol
# (issue #15): `rt_multi_threaded` and the hyper bench at 2, 4, 8 and 16
# workers, every runtime with that many. For a machine with 16 or more
# cores; on fewer, the larger counts time-slice and measure the OS.
#
#   bash benches/scaling.sh                 # builds, then runs (~6 min)
#   WORKERS="2 8" bash benches/scaling.sh   # other counts
#   BIN=dir bash benches/scaling.sh         # prebuilt `rt` and `hyper` in dir
#
# Writes one file per count and bench into $OUT (default: target/scaling).
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS=${WORKERS:-2 4 8 16}
OUT=${OUT:-target/scaling}
mkdir -p "$OUT"

if [ -z "${BIN:-}" ]; then
    BIN=target/scaling/bin
    mkdir -p "$BIN"
    # The last line of cargo's JSON messages for a bench names its binary.
    built() {
        grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4
    }
    cp "$(cargo build --release --bench rt_multi_threaded --message-format=json | built)" "$BIN/rt"
    cp "$(cargo build --release -p multipool-compat --bench hyper_server --features hyper,tokio \
        --message-format=json | built)" "$BIN/hyper"
fi

{ nproc; uname -srm; } > "$OUT/info.txt"
for w in $WORKERS; do
    echo "== $w workers"
    # Short samples: four runtimes, eight workloads, per count.
    MULTIPOOL_BENCH_WORKERS=$w "$BIN/rt" --bench --warm-up-time 0.3 --measurement-time 1 \
        --sample-size 10 --output-format bencher 2>/dev/null | grep '^test' | tee "$OUT/rt_$w.txt"
    MULTIPOOL_BENCH_WORKERS=$w "$BIN/hyper" --bench | tee "$OUT/hyper_$w.txt"
done
