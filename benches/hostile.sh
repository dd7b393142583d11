#!/usr/bin/env bash
# kage beside nginx (a plain reverse proxy) under hostile clients: the three
# slowhttptest attacks, slow headers (-H), slow body (-B) and slow read (-X),
# each against a fresh origin and a fresh proxy, while a well-behaved probe
# fetches a small page every 250 ms. Prints a markdown table:
#   mode | proxy | probes ok/total (%) | proxy CPU s | note
# A probe is ok when its whole 200 answer arrives within 1 s of connecting.
# The goal (the issue): >= 95 % of probes ok.
#
#   benches/hostile.sh                           # H B X x kage nginx, 20 s each
#   MODES=X PROXIES=kage DURATION=10 benches/hostile.sh
#   KAGE=/work/main/target/release/kage benches/hostile.sh   # another binary
#   KAGE_ARGS="--client-timeout 5s" benches/hostile.sh       # extra kage flags
#   KEEP=1 benches/hostile.sh                    # keep the scratch dir (logs)
#
# Environment (defaults in brackets):
#   BASE [18480]      ports: kage BASE, origin BASE+1, nginx BASE+2
#   DURATION [20]     seconds of attack (slowhttptest -l) and of probing
#   CONNS [500]       slowhttptest connections (-c)
#   RATE [200]        slowhttptest connections per second (-r)
#   MODES ["H B X"]   PROXIES ["kage nginx"]
#   MAXCONN [2048]    kage --max-connections; nginx gets 2 x MAXCONN
#                     worker_connections (it counts upstream connections too)
#   BIG_MIB [32]      size of the file the slow readers ask for
#   KAGE              kage binary; unset: cargo build --release here and use
#                     target/release/kage
#   KAGE_ARGS         extra kage flags    KAGE_LOG: RUST_LOG for kage [warn]
#   SHT_ARGS          extra slowhttptest flags, appended: they win (e.g. "-i 10")
#   OUT               also write the table to this file
#   KEEP [0]          1: keep the scratch dir (all logs) and print its path
#
# Everything listens on and talks to 127.0.0.1 only. Every process is started
# in its own process group (setsid) and ended by its group id when its run is
# over, and again on exit (trap). slowhttptest runs under timeout(1). A full
# run (3 modes x 2 proxies, DURATION=20) takes about 2.5 minutes: each run is
# DURATION plus ~5 s of start, checks and stop.
# Needs: slowhttptest (1.8), nginx, python3, curl, awk, setsid, timeout.
set -Eeuo pipefail
trap 'echo "hostile: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
here=$(cd "$(dirname "$0")/.." && pwd)
benches=$here/benches

BASE=${BASE:-18480}
DURATION=${DURATION:-20}
CONNS=${CONNS:-500}
RATE=${RATE:-200}
MODES=${MODES:-H B X}
PROXIES=${PROXIES:-kage nginx}
MAXCONN=${MAXCONN:-2048}
BIG_MIB=${BIG_MIB:-32}
KAGE_ARGS=${KAGE_ARGS:-}
KAGE_LOG=${KAGE_LOG:-warn}
SHT_ARGS=${SHT_ARGS:-}
KEEP=${KEEP:-0}
OUT=${OUT:-}

kage_port=$BASE
origin_port=$((BASE + 1))
nginx_port=$((BASE + 2))

say() { printf '%s\n' "hostile: $*" >&2; }
die() { say "$*"; exit 2; }

for tool in slowhttptest nginx python3 curl awk setsid timeout; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
for m in $MODES; do
    case $m in H | B | X) ;; *) die "MODES: unknown mode $m (H, B or X)" ;; esac
done
for p in $PROXIES; do
    case $p in kage | nginx) ;; *) die "PROXIES: unknown proxy $p (kage or nginx)" ;; esac
done

# slowhttptest needs CONNS descriptors, each proxy twice that.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ]; then hard=65536; fi
ulimit -n "$hard"
[ "$hard" -ge $((2 * CONNS + 64)) ] || say "warning: fd limit $hard is low for CONNS=$CONNS"

# shared helpers: the kage binary, process groups, cleanup trap, ports,
# templates
# shellcheck source=benches/lib.sh
source "$benches/lib.sh"
pick_kage

scratch=$(mktemp -d /tmp/kage-hostile.XXXXXX)
chmod 755 "$scratch" # nginx started as root serves files as nobody
root=$scratch/root
mkdir -p "$root"
printf 'hello\n' >"$root/small"
truncate -s "${BIG_MIB}M" "$root/big" # sparse: no disk, sendfile still sends it
hz=$(getconf CLK_TCK)

# tree_cpu PID: CPU seconds (utime+stime, plus that of reaped children) of
# PID and every living descendant, from /proc/*/stat.
tree_cpu() {
    # A process may end between the glob and the read: cat then fails.
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" -v hz="$hz" '
        {
            pid = $1; rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " ")
            ppid[pid] = f[2]; ticks[pid] = f[12] + f[13] + f[14] + f[15]
        }
        END {
            for (p in ppid) {
                q = p
                while (q != "" && q != 0 && q != root) q = ppid[q]
                if (q == root) sum += ticks[p]
            }
            printf "%.2f\n", sum / hz
        }'
}

# From slowhttptest's per-second CSV (-g -o; columns: seconds, closed,
# pending, connected, service available): the connections open at most and at
# the end, those the proxy closed, and the seconds its own probe said "down".
sht_summary() {
    local csv=$1
    [ -f "$csv" ] || { echo "sht: no stats"; return; }
    awk -F, '
        $1 ~ /^[0-9]+$/ {
            n++; if ($4 > peak) peak = $4
            if ($5 == 0) down++
            last_conn = $4; last_closed = $2
        }
        END {
            printf "sht: %d connected at most, %d at end, %d closed, its probe down %d of %d s",
                peak, last_conn, last_closed, down, n
        }' "$csv"
}

# -H and -B send a trickle every 5 s (-i; slowhttptest sends it on the
# test's 5 s ticks, from every connection at once), inside every idle timeout
# of both proxies (kage: 10 s backend, 15 s client; nginx: 15 s), so only a
# limit on the whole head or body ends them. (-i 10 would sit exactly on
# kage's 10 s backend timeout, which kage also applies to a master waiting
# for a slow client's body: runs then differ by scheduling jitter alone.)
# -X: receive window 512-1024 bytes, 32 bytes read every 5 s, a 32 MiB answer.
attack_args() { # MODE PORT
    case $1 in
    H) echo "-H -t GET -i 5 -x 24 -u http://127.0.0.1:$2/small" ;;
    B) echo "-B -t POST -i 5 -x 24 -s 1048576 -f application/x-www-form-urlencoded -u http://127.0.0.1:$2/post" ;;
    X) echo "-X -t GET -w 512 -y 1024 -n 5 -z 32 -k 1 -u http://127.0.0.1:$2/big" ;;
    esac
}

preflight() { # MODE PORT: the status the attack's URL answers a polite client
    case $1 in
    H) curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$2/small" ;;
    B) curl -s -m 5 -o /dev/null -w '%{http_code}' --data-binary 'a=b' "http://127.0.0.1:$2/post" ;;
    X) curl -s -m 5 -I -o /dev/null -w '%{http_code}' "http://127.0.0.1:$2/big" ;;
    esac || true
}

mode_name() {
    case $1 in H) echo "slow headers (-H)" ;; B) echo "slow body (-B)" ;; X) echo "slow read (-X)" ;; esac
}

rows=()

run_one() { # MODE PROXY
    local mode=$1 proxy=$2 port tag origin proxy_pid sht probe cpu0 cpu1 after alive
    tag=$mode-$proxy
    case $proxy in kage) port=$kage_port ;; nginx) port=$nginx_port ;; esac
    for p in "$origin_port" "$port"; do port_free "$p" || die "port $p is in use (set BASE)"; done

    mkdir -p "$scratch/$tag"
    render "$benches/conf/hostile-origin.conf" "$scratch/$tag/origin.conf" \
        port="$origin_port" tmp="$scratch/$tag" root="$root"
    start "$tag-origin" nginx -p "$scratch/$tag" -e "$scratch/$tag/origin.starterr" -c "$scratch/$tag/origin.conf"
    origin=$started
    wait_200 "$origin_port" "$origin" || die "the origin did not start (see $scratch/$tag-origin.log; KEEP=1)"

    case $proxy in
    kage)
        # shellcheck disable=SC2086 # KAGE_ARGS is a list of flags
        start "$tag-proxy" env RUST_LOG="$KAGE_LOG" "$kage_bin" --listen "127.0.0.1:$port" \
            --master "127.0.0.1:$origin_port" --max-connections "$MAXCONN" $KAGE_ARGS
        ;;
    nginx)
        render "$benches/conf/hostile-nginx.conf" "$scratch/$tag/nginx.conf" \
            listen="$port" backend="$origin_port" tmp="$scratch/$tag" wc=$((2 * MAXCONN))
        start "$tag-proxy" nginx -p "$scratch/$tag" -e "$scratch/$tag/nginx.starterr" -c "$scratch/$tag/nginx.conf"
        ;;
    esac
    proxy_pid=$started
    wait_200 "$port" "$proxy_pid" || die "$proxy did not start (see $scratch/$tag-proxy.log; KEEP=1)"
    # The attack's URL must work through the proxy, or the attack is void.
    local check
    check=$(preflight "$mode" "$port")
    [ "$check" = 200 ] || die "$(mode_name "$mode") URL through $proxy answered '$check', not 200 (KEEP=1 keeps the logs)"

    say "$(mode_name "$mode") against $proxy: $CONNS connections for ${DURATION}s"
    cpu0=$(tree_cpu "$proxy_pid")
    # shellcheck disable=SC2046,SC2086 # flag lists
    start "$tag-sht" timeout -k 5 $((DURATION + 30)) slowhttptest -c "$CONNS" -r "$RATE" -l "$DURATION" -p 3 \
        -g -o "$scratch/$tag-sht" \
        $(attack_args "$mode" "$port") $SHT_ARGS
    sht=$started
    start "$tag-probe" python3 "$benches/hostile-probe.py" 127.0.0.1 "$port" /small "$DURATION" 0.25 1
    probe=$started
    wait "$sht" 2>/dev/null || true
    cpu1=$(tree_cpu "$proxy_pid")
    wait "$probe" 2>/dev/null || true
    stop "$sht"
    stop "$probe"
    # The attackers are gone: does the proxy answer again, and is it idle?
    sleep 1
    after=$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/small" || true)
    local idle0 idle1
    idle0=$(tree_cpu "$proxy_pid")
    sleep 2
    idle1=$(tree_cpu "$proxy_pid")
    alive=yes
    kill -0 "$proxy_pid" 2>/dev/null || alive=no
    stop "$proxy_pid"
    stop "$origin"

    local summary ok total p50 mx ff pct cpu idle note
    summary=$(grep '^summary' "$scratch/$tag-probe.log" || echo "summary ok=0 total=0")
    ok=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' <<<"$summary")
    total=$(sed -n 's/.* total=\([0-9]*\).*/\1/p' <<<"$summary")
    p50=$(sed -n 's/.* p50_ms=\([^ ]*\).*/\1/p' <<<"$summary")
    mx=$(sed -n 's/.* max_ms=\([^ ]*\).*/\1/p' <<<"$summary")
    ff=$(sed -n 's/.* first_fail_s=\([^ ]*\).*/\1/p' <<<"$summary")
    pct=$(awk -v o="${ok:-0}" -v t="${total:-0}" 'BEGIN { printf "%.0f", t ? 100 * o / t : 0 }')
    cpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }')
    idle=$(awk -v a="$idle0" -v b="$idle1" 'BEGIN { printf "%.2f", b - a }')
    note="probe p50 ${p50:--} ms, max ${mx:--} ms"
    [ "${ff:--}" = - ] || note+=", first failure at ${ff} s"
    note+="; $(sht_summary "$scratch/$tag-sht.csv")"
    # slowhttptest ends early when the proxy has closed every connection.
    local ended
    ended=$(sed 's/\x1b\[[0-9;]*m//g' "$scratch/$tag-sht.log" | tr -d '\r' |
        awk '/^Test ended on/ { s = $4 } /^Exit status:/ { sub(/^Exit status: */, ""); e = $0 }
             END { if (e != "Hit test time limit") printf "sht ended on %s second: %s", s, e }')
    [ -z "$ended" ] || note+=", $ended"
    local log_lines
    case $proxy in kage) log_lines=$(wc -l <"$scratch/$tag-proxy.log") ;; nginx) log_lines=$(wc -l <"$scratch/$tag/nginx.err") ;; esac
    note+="; after: GET ${after:-none}"
    [ "$alive" = yes ] || note+=", proxy DIED"
    note+=", ${idle} s CPU in the next 2 s"
    [ "$log_lines" = 0 ] || note+="; $log_lines lines in the proxy's log (KEEP=1)"
    say "  $ok/$total probes ok, proxy CPU ${cpu} s"
    rows+=("| $(mode_name "$mode") | $proxy | $ok/$total ($pct %) | $cpu | $note |")
    sleep 1 # let the sockets of this run wind down
}

start_time=$(date +%s)
for mode in $MODES; do
    for proxy in $PROXIES; do
        run_one "$mode" "$proxy"
    done
done

{
    echo
    echo "kage: $kage_desc${KAGE_ARGS:+ $KAGE_ARGS}; $(nginx -v 2>&1 | sed 's/.*version: //'); slowhttptest -c $CONNS -r $RATE -l $DURATION${SHT_ARGS:+ $SHT_ARGS}; probe GET /small every 250 ms, ok = 200 within 1 s; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(($(date +%s) - start_time)) s"
    echo
    echo "| mode | proxy | probes ok/total (%) | proxy CPU s | note |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
} | tee ${OUT:+"$OUT"}
