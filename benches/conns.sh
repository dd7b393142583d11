#!/usr/bin/env bash
# Memory per client connection: kage beside nginx (a plain reverse proxy) in
# one run, with real sockets on 127.0.0.1. Three scenarios, each against a
# fresh proxy process:
#   idle     IDLE_CONNS connections each send one keep-alive
#            `GET /small HTTP/1.1`, read the whole 200 and stay open, idle
#   partial  PARTIAL_CONNS connections each send HEAD_BYTES bytes of a
#            request head (no final blank line) and wait
#   many     MANY_CONNS keep-alive connections, every one answered once and
#            all held open together (clamped to the proxy's fd limit)
# RSS per connection = (proxy RSS loaded - proxy RSS at baseline) / the
# connections held open when it was measured (= conns when all answered).
# Baseline: the proxy started and served a warm-up of 200 requests over 20
# connections, since closed. RSS is VmRSS of the process that holds the
# connections: kage itself; nginx's one worker (the master's child). Loaded
# RSS is sampled SAMPLES times, 1 s apart, SETTLE s after the last client is
# ready; the last sample counts. Prints a markdown table
#   scenario | conns | kage RSS/conn (B) | nginx RSS/conn (B) | kage/nginx |
#   kage answered | nginx answered
# and the totals behind it (KiB), so the arithmetic can be checked.
#
#   benches/conns.sh                                  # idle partial many x kage nginx
#   SCENARIOS=idle PROXIES=kage benches/conns.sh
#   IDLE_CONNS=1000 MANY_CONNS=5000 benches/conns.sh  # smaller
#   KAGE=/work/main/target/release/kage benches/conns.sh   # another binary
#   KAGE_ARGS="--pool-idle 16" benches/conns.sh       # extra kage flags
#   KEEP=1 OUT=/tmp/conns.md benches/conns.sh         # keep logs, save the table
#
# Environment (defaults in brackets):
#   BASE [18580]          ports: kage BASE, origin BASE+1, nginx BASE+2
#   SCENARIOS ["idle partial many"]   PROXIES ["kage nginx"]
#   IDLE_CONNS [5000]  PARTIAL_CONNS [4000]  MANY_CONNS [20000]
#   HEAD_BYTES [300]      size of each partial request head
#   FD_HEADROOM [128]     descriptors the proxy keeps besides its client
#                         connections: every scenario's count is clamped to
#                         the hard fd limit less this, and the clamp printed.
#                         Both proxies keep up to 64 idle backend connections
#                         (kage --pool-idle, nginx upstream keepalive), more
#                         while requests are in flight, and ~10 more for the
#                         listener, epoll, logs, signals: with 64, nginx
#                         (~74 besides its clients) cannot accept the last
#                         clients (EMFILE)
#   CONCURRENCY [200]     connections connecting or waiting for an answer at
#                         once, over all client processes
#   PER_CLIENT [5000]     connections per client process; each process binds
#                         its own source address, 127.0.0.2, 127.0.0.3, ...
#   CLIENT_ARGS           extra benches/conns-client.py flags (e.g. "--stall 10")
#   SETTLE [3]  SAMPLES [2]   seconds idle before measuring; RSS samples
#   KAGE                  kage binary; unset: cargo build --release here and
#                         use target/release/kage
#   KAGE_ARGS             extra kage flags    KAGE_LOG: RUST_LOG for kage [warn]
#   OUT                   also write the tables to this file
#   KEEP [0]              1: keep the scratch dir (all logs) and print its path
#
# kage runs as `kage --listen 127.0.0.1:BASE --master 127.0.0.1:BASE+1
# --max-connections N --client-timeout 60s` (60 s: the default 10 s would
# end the partial heads before they are measured; nginx gets
# client_header_timeout 60s for the same reason; see
# benches/conf/conns-nginx.conf). The clients (benches/conns-client.py) give
# up on a connection after 10 s, and on the rest once none has been answered
# for 5 s: a proxy at its limit shows as fewer answered, not as a hang.
#
# Everything listens on and talks to 127.0.0.1 only (clients from
# 127.0.0.2... too). Every process is started in its own process group
# (setsid) and ended by its group id when its run is over, and again on exit
# (trap). A full run takes about a minute (57 s here).
# Needs: nginx, python3, curl, awk, setsid; ss (iproute2) for the listen
# queue, optional.
set -Eeuo pipefail
trap 'echo "conns: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
here=$(cd "$(dirname "$0")/.." && pwd)
benches=$here/benches

BASE=${BASE:-18580}
SCENARIOS=${SCENARIOS:-idle partial many}
PROXIES=${PROXIES:-kage nginx}
IDLE_CONNS=${IDLE_CONNS:-5000}
PARTIAL_CONNS=${PARTIAL_CONNS:-4000}
MANY_CONNS=${MANY_CONNS:-20000}
HEAD_BYTES=${HEAD_BYTES:-300}
FD_HEADROOM=${FD_HEADROOM:-128}
CONCURRENCY=${CONCURRENCY:-200}
PER_CLIENT=${PER_CLIENT:-5000}
CLIENT_ARGS=${CLIENT_ARGS:-}
SETTLE=${SETTLE:-3}
SAMPLES=${SAMPLES:-2}
KAGE_ARGS=${KAGE_ARGS:-}
KAGE_LOG=${KAGE_LOG:-warn}
KEEP=${KEEP:-0}
OUT=${OUT:-}

kage_port=$BASE
origin_port=$((BASE + 1))
nginx_port=$((BASE + 2))

say() { printf '%s\n' "conns: $*" >&2; }
die() { say "$*"; exit 2; }

for tool in nginx python3 curl awk setsid; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
have_ss=0
command -v ss >/dev/null && have_ss=1
for s in $SCENARIOS; do
    case $s in idle | partial | many) ;; *) die "SCENARIOS: unknown scenario $s (idle, partial or many)" ;; esac
done
for p in $PROXIES; do
    case $p in kage | nginx) ;; *) die "PROXIES: unknown proxy $p (kage or nginx)" ;; esac
done
for v in IDLE_CONNS PARTIAL_CONNS MANY_CONNS HEAD_BYTES FD_HEADROOM CONCURRENCY PER_CLIENT SETTLE SAMPLES; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v=${!v}: expected a whole number of at least 1"
done

# Descriptors: the proxy (and each client process) gets the hard limit;
# the soft one is raised to it here and inherited. The hard limit cannot be
# raised without CAP_SYS_RESOURCE, so it bounds what one proxy can hold.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ]; then hard=1048576; fi
ulimit -n "$hard"
fd_limit=$hard
max_conns=$((fd_limit - FD_HEADROOM))
[ "$max_conns" -gt 0 ] || die "fd limit $fd_limit leaves nothing after FD_HEADROOM=$FD_HEADROOM"
[ "$PER_CLIENT" -le $((fd_limit - 16)) ] || die "PER_CLIENT=$PER_CLIENT does not fit in the fd limit $fd_limit"

# Ephemeral ports: one range per source address (and destination); each
# client process binds its own address, so PER_CLIENT must fit in one range.
read -r port_lo port_hi </proc/sys/net/ipv4/ip_local_port_range
ports=$((port_hi - port_lo + 1))
say "fd limit $fd_limit (soft raised to hard; ulimit -Hn); net.ipv4.ip_local_port_range $port_lo-$port_hi: $ports ports per source address"
[ "$PER_CLIENT" -le $((ports - 1000)) ] || die "PER_CLIENT=$PER_CLIENT is close to the $ports ephemeral ports of one source address"

clamps=()
conns_for() { # SCENARIO: its connection count, clamped
    local want
    case $1 in idle) want=$IDLE_CONNS ;; partial) want=$PARTIAL_CONNS ;; many) want=$MANY_CONNS ;; esac
    if [ "$want" -gt "$max_conns" ]; then echo "$max_conns"; else echo "$want"; fi
}
for s in $SCENARIOS; do
    n=$(conns_for "$s")
    case $s in idle) want=$IDLE_CONNS ;; partial) want=$PARTIAL_CONNS ;; many) want=$MANY_CONNS ;; esac
    if [ "$n" != "$want" ]; then
        clamps+=("$s: $want connections clamped to $n: the proxy process may open $fd_limit descriptors (hard limit, ulimit -Hn; it cannot be raised here), less FD_HEADROOM=$FD_HEADROOM for the listener, epoll, logs and backend connections (kage's pool and nginx's upstream keepalive both keep up to 64 idle, more while requests are in flight)")
        say "${clamps[-1]}"
    fi
done

# shared helpers: the kage binary, process groups, cleanup trap, ports,
# templates
# shellcheck source=benches/lib.sh
source "$benches/lib.sh"
pick_kage

scratch=$(mktemp -d /tmp/kage-conns.XXXXXX)
chmod 755 "$scratch"

# child_of PID: the pid of PID's (only) child, from /proc/*/stat; empty if none.
child_of() {
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v parent="$1" '
        { rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " ") }
        f[2] == parent { print $1; exit }'
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# listen_queue PORT: connections waiting in PORT's accept queue (ss), or "?".
listen_queue() {
    [ "$have_ss" = 1 ] || { echo "?"; return; }
    ss -Hltn "sport = :$1" | awk '{ q += $2 } END { print q + 0 }'
}

# field LINE KEY: the value of KEY=value in LINE (0 when absent).
field() { sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" <<<"$1" | grep . || echo 0; }

declare -A per_conn answered_col
totals=()

run_one() { # SCENARIO PROXY
    local scen=$1 proxy=$2 port tag n mode proxy_pid holder
    tag=$scen-$proxy
    n=$(conns_for "$scen")
    case $scen in idle | many) mode=idle ;; partial) mode=partial ;; esac
    case $proxy in kage) port=$kage_port ;; nginx) port=$nginx_port ;; esac
    port_free "$port" || die "port $port is in use (set BASE)"
    mkdir -p "$scratch/$tag"

    case $proxy in
    kage)
        # shellcheck disable=SC2086 # KAGE_ARGS is a list of flags
        start "$tag-proxy" env RUST_LOG="$KAGE_LOG" "$kage_bin" --listen "127.0.0.1:$port" \
            --master "127.0.0.1:$origin_port" --max-connections "$n" --client-timeout 60s $KAGE_ARGS
        ;;
    nginx)
        render "$benches/conf/conns-nginx.conf" "$scratch/$tag/nginx.conf" \
            listen="$port" backend="$origin_port" tmp="$scratch/$tag" wc=$((2 * fd_limit)) nofile="$fd_limit"
        start "$tag-proxy" nginx -p "$scratch/$tag" -e "$scratch/$tag/nginx.starterr" -c "$scratch/$tag/nginx.conf"
        ;;
    esac
    proxy_pid=$started
    wait_200 "$port" "$proxy_pid" || die "$proxy did not start (see $scratch/$tag-proxy.log; KEEP=1)"
    holder=$proxy_pid
    if [ "$proxy" = nginx ]; then
        holder=$(child_of "$proxy_pid")
        [ -n "$holder" ] || die "no nginx worker under master $proxy_pid"
    fi

    # Warm-up: 20 connections x 10 requests, then closed.
    local warm
    python3 "$benches/conns-client.py" idle 127.0.0.1 "$port" 20 --requests 10 --exit \
        >"$scratch/$tag-warmup.log" 2>&1 || die "warm-up through $proxy failed (see $scratch/$tag-warmup.log; KEEP=1)"
    warm=$(grep '^ready' "$scratch/$tag-warmup.log" || true)
    [ "$(field "$warm" answered)" = 20 ] || die "warm-up through $proxy: $warm"
    sleep 1
    local base
    base=$(rss_kib "$holder")

    # The clients: PER_CLIENT connections per process at most, each process
    # from its own source address.
    local procs share rest conc i count clients=()
    procs=$(((n + PER_CLIENT - 1) / PER_CLIENT))
    [ "$procs" -le 250 ] || die "$n connections need $procs client processes (raise PER_CLIENT)"
    share=$((n / procs))
    rest=$((n % procs))
    conc=$(((CONCURRENCY + procs - 1) / procs))
    say "$scen through $proxy: $n connections from $procs client process(es), $CONCURRENCY in progress at once; baseline RSS $base KiB"
    local t0 t1
    t0=$(date +%s.%N)
    for i in $(seq 0 $((procs - 1))); do
        count=$share
        [ "$i" -ge "$rest" ] || count=$((count + 1))
        # shellcheck disable=SC2086 # CLIENT_ARGS is a list of flags
        start "$tag-client$i" python3 "$benches/conns-client.py" "$mode" 127.0.0.1 "$port" "$count" \
            --source "127.0.0.$((2 + i))" --concurrency "$conc" --head-bytes "$HEAD_BYTES" $CLIENT_ARGS
        clients+=("$started")
    done

    # Until every client process has printed its ready line.
    local ready waited=0 c line
    while :; do
        ready=0
        for i in $(seq 0 $((procs - 1))); do
            grep -qs '^ready' "$scratch/$tag-client$i.log" && ready=$((ready + 1))
        done
        [ "$ready" -lt "$procs" ] || break
        for c in "${clients[@]}"; do
            kill -0 "$c" 2>/dev/null || die "a client process ended early (see $scratch/$tag-client*.log; KEEP=1)"
        done
        waited=$((waited + 1))
        [ "$waited" -lt 1500 ] || die "clients not ready after 150 s (see $scratch/$tag-client*.log; KEEP=1)"
        sleep 0.1
    done
    t1=$(date +%s.%N)
    local ans=0 fail=0 errs=()
    for i in $(seq 0 $((procs - 1))); do
        line=$(grep '^ready' "$scratch/$tag-client$i.log")
        ans=$((ans + $(field "$line" answered)))
        fail=$((fail + $(field "$line" failed)))
        [ "$(field "$line" errors)" = - ] || errs+=("$(field "$line" errors)")
    done
    say "  $ans answered, $fail failed in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s; settling ${SETTLE} s"

    sleep "$SETTLE"
    local loaded fds queue s
    for s in $(seq "$SAMPLES"); do
        [ "$s" = 1 ] || sleep 1
        loaded=$(rss_kib "$holder")
        say "  RSS sample $s: $loaded KiB"
    done
    fds=$(fd_count "$holder")
    queue=$(listen_queue "$port")
    local alive=yes
    kill -0 "$holder" 2>/dev/null || alive=no

    local open=0 closed=0
    for c in "${clients[@]}"; do kill -TERM -- "-$c" 2>/dev/null || true; done
    for c in "${clients[@]}"; do stop "$c"; done
    for i in $(seq 0 $((procs - 1))); do
        line=$(grep '^final' "$scratch/$tag-client$i.log" || true)
        open=$((open + $(field "$line" open)))
        closed=$((closed + $(field "$line" closed)))
    done
    stop "$proxy_pid"

    local delta per note log_lines
    delta=$((loaded - base))
    per=$(awk -v d="$delta" -v o="$open" 'BEGIN { if (o > 0) printf "%.0f", d * 1024 / o; else print "-" }')
    per_conn[$scen,$proxy]=$per
    if [ "$mode" = partial ]; then
        answered_col[$scen,$proxy]="$open/$n held"
    else
        answered_col[$scen,$proxy]="$ans/$n"
    fi
    note=""
    [ "$fail" = 0 ] || note+="failed: $(printf '%s\n' "${errs[@]+"${errs[@]}"}" | tr ',' '\n' | awk -F: '
        NF == 2 { n[$1] += $2 } END { for (k in n) printf "%s%s %d", (i++ ? ", " : ""), k, n[k] }'); "
    [ "$closed" = 0 ] || note+="$closed closed by the proxy while held; "
    [ "$queue" = 0 ] || note+="$queue still in the listen queue (not accepted); "
    [ "$alive" = yes ] || note+="proxy DIED; "
    # The proxy's log, less the lines every run has: kage at its cap (it
    # gets exactly --max-connections clients), nginx's worker_connections
    # above the fd limit (on purpose, see conns-nginx.conf).
    local log
    case $proxy in kage) log=$scratch/$tag-proxy.log ;; nginx) log=$scratch/$tag/nginx.err ;; esac
    grep -v -e 'the cap (--max-connections)' -e 'worker_connections exceed open file resource limit' \
        "$log" >"$log.unexpected" || true
    log_lines=$(wc -l <"$log.unexpected")
    if [ "$log_lines" != 0 ]; then
        note+="$log_lines lines in the proxy's log (first: $(head -1 "$log.unexpected" |
            sed -e 's/^\[[^]]*\] *//' -e 's/^[0-9/]* [0-9:]* //' | cut -c1-120))"
    fi
    note=${note%; }
    note=${note//|/\\|}
    say "  $proxy: $base -> $loaded KiB with $open open: $per B per connection; $fds fds${note:+; $note}"
    totals+=("| $scen | $proxy | $n | $base | $loaded | $delta | $open | $per | $fds | $ans | $fail | ${note:--} |")
    sleep 1 # let the sockets of this run wind down
}

start_time=$(date +%s)

# One origin for every run (not under test).
mkdir -p "$scratch/origin"
render "$benches/conf/conns-origin.conf" "$scratch/origin/origin.conf" \
    port="$origin_port" tmp="$scratch/origin" wc=$((2 * fd_limit)) nofile="$fd_limit"
port_free "$origin_port" || die "port $origin_port is in use (set BASE)"
start origin nginx -p "$scratch/origin" -e "$scratch/origin/origin.starterr" -c "$scratch/origin/origin.conf"
origin=$started
wait_200 "$origin_port" "$origin" || die "the origin did not start (see $scratch/origin.log; KEEP=1)"

for scen in $SCENARIOS; do
    for proxy in $PROXIES; do
        run_one "$scen" "$proxy"
    done
done
stop "$origin"

ratio() { # KAGE NGINX
    awk -v k="$1" -v g="$2" 'BEGIN {
        if (k == "-" || g == "-" || g + 0 <= 0) { print "-"; exit }
        r = k / g; printf (r >= 10 ? "%.0f×" : "%.2f×"), r }'
}

{
    echo
    echo "kage: $kage_desc --client-timeout 60s${KAGE_ARGS:+ $KAGE_ARGS}; $(nginx -v 2>&1 | sed 's/.*version: //') (1 worker); fd limit $fd_limit; $ports ephemeral ports per source address; $CONCURRENCY connections in progress at once; RSS ${SETTLE} s after the last answer; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(($(date +%s) - start_time)) s"
    for c in "${clamps[@]+"${clamps[@]}"}"; do echo "- $c"; done
    echo
    echo "| scenario | conns | kage RSS/conn (B) | nginx RSS/conn (B) | kage/nginx | kage answered | nginx answered |"
    echo "|---|---|---|---|---|---|---|"
    for scen in $SCENARIOS; do
        k=${per_conn[$scen,kage]:--}
        g=${per_conn[$scen,nginx]:--}
        echo "| $scen | $(conns_for "$scen") | $k | $g | $(ratio "$k" "$g") | ${answered_col[$scen,kage]:--} | ${answered_col[$scen,nginx]:--} |"
    done
    echo
    echo "RSS/conn = (loaded - baseline) x 1024 / open (connections the clients still held when told to stop). partial: no answer is expected; \"held\" is the heads sent and still open at the end. proxy fds: open descriptors of the measured process when loaded. failed: not-tried = never opened, stalled = in progress, when a client process gave up (nothing answered for 5 s). Not counted in the notes: kage's \"connections open, the cap\" line (it gets exactly --max-connections clients) and nginx's \"worker_connections exceed open file resource limit\" (on purpose)."
    echo
    echo "| scenario | proxy | conns | baseline KiB | loaded KiB | delta KiB | open | RSS/conn (B) | proxy fds | answered | failed | note |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${totals[@]}"
} | tee ${OUT:+"$OUT"}
