#!/usr/bin/env bash
# TLS cost: kage beside nginx (ssl) in one run, everything pinned to one
# core (CPU 0: wrk, the origin, the proxy), on 127.0.0.1. The same ECDSA
# P-256 certificate, TLS 1.3, small answers (/small: 6 bytes).
#   keep-alive   wrk -t1 -c50 over HTTPS: proxy CPU µs per request
#   handshakes   the same with `Connection: close`: every request a new TLS
#                connection (wrk resumes none); req/s = handshakes/s
#   backends     kage with a plain listener, a master and a shadow with
#                --keep-alive always (pooled backend connections): the
#                backends over plain HTTP, then over HTTPS
# CPU: utime+stime of the proxy's process group (nginx: master and worker)
# from /proc before and after each load, over the requests wrk counted.
# Prints a markdown table.
#
#   benches/tls.sh                       # all, 5 s each
#   DURATION=10 benches/tls.sh
#   KAGE=/path/to/kage benches/tls.sh    # another binary
#   KEEP=1 OUT=/tmp/tls.md benches/tls.sh
#
# Environment: BASE [18680] (kage BASE, nginx BASE+1, origins BASE+2..+5),
# DURATION [5], WARMUP [2] seconds, CONNS [50], KAGE, KAGE_LOG [warn], OUT,
# KEEP [0]. Needs nginx, wrk, openssl, curl, taskset.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BASE=${BASE:-18680}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-50}
KEEP=${KEEP:-0}
say() { echo "tls.sh: $*" >&2; }
die() {
    say "$*"
    exit 1
}
# shellcheck source=benches/lib.sh
. "$here/benches/lib.sh"
for tool in nginx wrk openssl curl taskset; do
    command -v "$tool" >/dev/null || die "needs $tool"
done
pick_kage
scratch=$(mktemp -d /tmp/kage-tls-bench.XXXXXX)
kport=$BASE nport=$((BASE + 1)) plain=$((BASE + 2)) plain2=$((BASE + 3)) tls=$((BASE + 4)) tls2=$((BASE + 5))
for p in $kport $nport $plain $plain2 $tls $tls2; do port_free "$p" || die "port $p is taken"; done

# One ECDSA P-256 certificate for localhost and 127.0.0.1, signed by a CA
# kage trusts for its HTTPS backends.
(
    cd "$scratch"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
        -days 2 -subj /CN=bench-ca -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout leaf.key -out leaf.csr \
        -subj /CN=localhost
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >leaf.ext
    openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 2 -extfile leaf.ext
) >"$scratch/openssl.log" 2>&1 || die "openssl failed: $(cat "$scratch/openssl.log")"
cert=$scratch/leaf.pem key=$scratch/leaf.key

render "$here/benches/conf/tls-origin.conf" "$scratch/origin.conf" plain=$plain plain2=$plain2 tls=$tls \
    tls2=$tls2 cert="$cert" key="$key" tmp="$scratch"
render "$here/benches/conf/tls-nginx.conf" "$scratch/nginx.conf" listen=$nport backend=$plain cert="$cert" \
    key="$key" tmp="$scratch"
start origin taskset -c 0 nginx -e "$scratch/origin.starterr" -c "$scratch/origin.conf"
wait_200 "$plain" "$started" || die "the origin did not start: $(cat "$scratch/origin.log")"

cpu_ticks() { # process group -> utime+stime ticks of its processes
    local total=0 pid f
    for pid in $(pgrep -g "$1"); do
        f=$(cut -d')' -f2- "/proc/$pid/stat" 2>/dev/null) || continue
        # shellcheck disable=SC2086
        set -- $f
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}
hz=$(getconf CLK_TCK)

# load NAME GROUP URL [wrk args...]: one warm-up and one measured wrk run;
# appends a row (req/s, CPU µs per request).
rows=()
load() {
    local name=$1 g=$2 url=$3 out before after reqs rps us
    shift 3
    taskset -c 0 wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$@" "$url" >/dev/null 2>&1 || true
    before=$(cpu_ticks "$g")
    out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" "$@" "$url" 2>&1) || die "wrk failed: $out"
    after=$(cpu_ticks "$g")
    reqs=$(echo "$out" | sed -n 's/^ *\([0-9]*\) requests in.*/\1/p')
    rps=$(echo "$out" | sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p')
    errors=$(echo "$out" | grep -E 'Non-2xx|Socket errors' | tr -s ' ' | tr '\n' ';' || true)
    [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || die "$name: no request counted: $out"
    us=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$reqs" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
    rows+=("| $name | $rps | $us | ${errors:-} |")
    say "$name: $rps req/s, $us µs CPU/req ${errors:-}"
}

# with NAME CMD...: starts a proxy, waits for it, runs the loads given in
# $loads (name|url|wrk args), stops it.
kage_run() { # NAME PORT SCHEME ARGS...
    local name=$1 port=$2 scheme=$3
    shift 3
    start "$name" taskset -c 0 env RUST_LOG="${KAGE_LOG:-warn}" "$kage_bin" --listen "127.0.0.1:$port" "$@"
    local g=$started i
    for i in $(seq 100); do
        [ "$(curl -sk -m 1 -o /dev/null -w '%{http_code}' "$scheme://127.0.0.1:$port/small")" = 200 ] && break
        kill -0 "$g" 2>/dev/null || die "$name did not start: $(cat "$scratch/$name.log")"
        sleep 0.1
    done
    proxy_group=$g
}

say "kage ($kage_desc) and nginx ($(nginx -v 2>&1 | sed 's/.*: //')), ${DURATION}s loads, -c$CONNS, CPU 0"
kage_run kage-https $kport https --tls-cert "$cert" --tls-key "$key" --master "127.0.0.1:$plain"
load "kage HTTPS keep-alive" "$proxy_group" "https://127.0.0.1:$kport/small"
load "kage HTTPS new handshake per request" "$proxy_group" "https://127.0.0.1:$kport/small" -H 'Connection: close'
stop "$proxy_group"

start nginx taskset -c 0 nginx -e "$scratch/nginx.starterr" -c "$scratch/nginx.conf"
g=$started
for i in $(seq 100); do
    [ "$(curl -sk -m 1 -o /dev/null -w '%{http_code}' "https://127.0.0.1:$nport/small")" = 200 ] && break
    sleep 0.1
done
load "nginx HTTPS keep-alive" "$g" "https://127.0.0.1:$nport/small"
load "nginx HTTPS new handshake per request" "$g" "https://127.0.0.1:$nport/small" -H 'Connection: close'
stop "$g"

kage_run kage-plain-backends $kport http --keep-alive always --master "127.0.0.1:$plain" \
    --shadow "127.0.0.1:$plain2"
load "kage master+shadow, plain backends" "$proxy_group" "http://127.0.0.1:$kport/small"
stop "$proxy_group"
kage_run kage-https-backends $kport http --keep-alive always --backend-ca "$scratch/ca.pem" \
    --master "https://localhost:$tls" --shadow "https://localhost:$tls2"
load "kage master+shadow, HTTPS backends" "$proxy_group" "http://127.0.0.1:$kport/small"
stop "$proxy_group"

table=$(
    echo "| run | req/s | proxy CPU µs/req | errors |"
    echo "|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
)
echo "$table"
[ -z "${OUT:-}" ] || echo "$table" >"$OUT"
