#!/usr/bin/env bash
# End-to-end proxy cost against nginx in one run, with the shared harness
# (../shared/bench: run its setup.sh once per machine). Reports proxy CPU µs
# per request and req/s ratios; see ../shared/bench/README.md.
#
#   benches/e2e.sh                      # onecore layout, c50 and c1, small and 64k
#   ROUNDS=2 DURATION=10 benches/e2e.sh # longer
#   LAYOUT=split benches/e2e.sh         # proxy alone on CPU 1
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bench=${BENCH_DIR:-$here/../shared/bench}
[ -f "$bench/bench.py" ] || { echo "no harness at $bench (set BENCH_DIR)" >&2; exit 2; }
cargo build --release --manifest-path "$here/Cargo.toml" >/dev/null
kage="$here/target/release/kage --listen 127.0.0.1:{listen} --master 127.0.0.1:{master}"
cpu_proxy=0
[ "${LAYOUT:-onecore}" = split ] && cpu_proxy=1
cd "$bench"
exec python3 bench.py --rounds "${ROUNDS:-1}" --duration "${DURATION:-5}" --warmup "${WARMUP:-2}" \
    --modes "${MODES:-c50,c1}" --bodies "${BODIES:-small,64k}" --cpu-proxy "$cpu_proxy" \
    --out "${OUT:-/tmp/kage-e2e-$(date +%Y%m%d-%H%M%S)}" \
    --proxy 'name=nginx-proxy;shadow=none;conf=conf/nginx-proxy.conf.tmpl;cmd=nginx -e {tmp}/nginx-proxy.starterr -c {conf}' \
    --proxy 'name=nginx-mirror;shadow=fast;conf=conf/nginx-mirror.conf.tmpl;cmd=nginx -e {tmp}/nginx-mirror.starterr -c {conf}' \
    --proxy "name=kage;shadow=none;cmd=$kage" \
    --proxy "name=kage-shadow;shadow=fast;cmd=$kage --shadow 127.0.0.1:{shadow}" \
    --proxy "name=kage-slowshadow;shadow=slow;cmd=$kage --shadow 127.0.0.1:{shadow}"
