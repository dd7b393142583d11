#!/usr/bin/env bash
# End-to-end proxy cost against nginx in one run, with the shared harness
# (../shared/bench: run its setup.sh once per machine). Reports proxy CPU µs
# per request and req/s ratios; see ../shared/bench/README.md.
#
#   benches/e2e.sh                      # onecore layout, c50 and c1, small and 64k
#   ROUNDS=2 DURATION=10 benches/e2e.sh # longer
#   LAYOUT=split benches/e2e.sh         # proxy alone on CPU 1
#   KAGE_ARGS="--shadow-max-inflight 128" benches/e2e.sh   # extra kage flags
#   ONLY='nginx-mirror|kage-ka' MODES=c50 BODIES=small benches/e2e.sh
#                                       # the targets whose name matches
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bench=${BENCH_DIR:-$here/../shared/bench}
[ -f "$bench/bench.py" ] || { echo "no harness at $bench (set BENCH_DIR)" >&2; exit 2; }
cargo build --release --manifest-path "$here/Cargo.toml" >/dev/null
kage="env RUST_LOG=${KAGE_LOG:-info} $here/target/release/kage --listen 127.0.0.1:{listen} --master 127.0.0.1:{master} ${KAGE_ARGS:-}"
shadow="--shadow 127.0.0.1:{shadow}"
cpu_proxy=0
[ "${LAYOUT:-onecore}" = split ] && cpu_proxy=1
targets=(
    "name=nginx-proxy;shadow=none;conf=conf/nginx-proxy.conf.tmpl;cmd=nginx -e {tmp}/nginx-proxy.starterr -c {conf}"
    "name=nginx-mirror;shadow=fast;conf=conf/nginx-mirror.conf.tmpl;cmd=nginx -e {tmp}/nginx-mirror.starterr -c {conf}"
    "name=kage;shadow=none;cmd=$kage"
    "name=kage-shadow;shadow=fast;cmd=$kage $shadow"
    "name=kage-slowshadow;shadow=slow;cmd=$kage $shadow"
    "name=kage-ka-shadow;shadow=fast;cmd=$kage --keep-alive always $shadow"
    "name=kage-ka-slowshadow;shadow=slow;cmd=$kage --keep-alive always $shadow"
    "name=kage-ka-difflog;shadow=fast;cmd=$kage --keep-alive always $shadow --diff-log {tmp}/diff.jsonl"
    "name=kage-access;shadow=none;cmd=$kage --access-log {tmp}/access.log"
    "name=kage-ka-shadow-access;shadow=fast;cmd=$kage --keep-alive always $shadow --access-log {tmp}/access.log"
)
args=()
for t in "${targets[@]}"; do
    name=${t%%;*}
    name=${name#name=}
    if [[ -z "${ONLY:-}" || "$name" =~ ^(${ONLY})$ ]]; then
        args+=(--proxy "$t")
    fi
done
cd "$bench"
exec python3 bench.py --rounds "${ROUNDS:-1}" --duration "${DURATION:-5}" --warmup "${WARMUP:-2}" \
    --modes "${MODES:-c50,c1}" --bodies "${BODIES:-small,64k}" --cpu-proxy "$cpu_proxy" \
    --out "${OUT:-/tmp/kage-e2e-$(date +%Y%m%d-%H%M%S)}" "${args[@]}"
