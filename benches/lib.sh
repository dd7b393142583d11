# shellcheck shell=bash disable=SC2034,SC2154  # sourced: $here and the outputs are the caller's
# Shell helpers benches/hostile.sh and benches/conns.sh share; sourced once
# the script has set $here, $KEEP, say() and die() ($scratch may come later).
# Every process is started in its own session (process group) and ended by
# its group id, on exit too.

# pick_kage: $kage_bin and $kage_desc: $KAGE, or a release build of $here.
pick_kage() {
    if [ -n "${KAGE:-}" ]; then
        kage_bin=$KAGE
        kage_desc=$kage_bin
    else
        say "cargo build --release"
        cargo build --release --manifest-path "$here/Cargo.toml" >&2
        kage_bin=$here/target/release/kage
        kage_desc="$kage_bin ($(git -C "$here" describe --always --dirty 2>/dev/null || echo '?'))"
    fi
    [ -x "$kage_bin" ] || die "no kage binary at $kage_bin"
}

groups=() # process group ids (= pids, by setsid) still to end

cleanup() {
    local g
    for g in "${groups[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
    sleep 0.3
    for g in "${groups[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
    groups=()
    [ -n "${scratch:-}" ] || return 0
    if [ "$KEEP" = 1 ]; then
        say "logs kept in $scratch"
    else
        rm -rf "$scratch"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# start NAME CMD...: runs CMD in a new session (own process group), output to
# $scratch/NAME.log; sets $started to its pid (= its group id).
start() {
    local name=$1
    shift
    setsid "$@" >"$scratch/$name.log" 2>&1 </dev/null &
    started=$!
    groups+=("$started")
}

# stop PID: ends the process group PID (TERM, then KILL after 3 s).
stop() {
    local g=$1 i rest=()
    kill -TERM -- "-$g" 2>/dev/null || true
    for i in $(seq 30); do
        kill -0 -- "-$g" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$g" 2>/dev/null || true
    wait "$g" 2>/dev/null || true
    for i in "${groups[@]}"; do [ "$i" = "$g" ] || rest+=("$i"); done
    groups=("${rest[@]+"${rest[@]}"}")
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_200 PORT PID: until GET /small on PORT answers 200 (10 s at most).
wait_200() {
    local i
    for i in $(seq 100); do
        kill -0 "$2" 2>/dev/null || return 1
        [ "$(curl -s -m 1 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/small")" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}

render() { # TEMPLATE OUT key=value...
    local tmpl=$1 out=$2 kv expr=()
    shift 2
    for kv in "$@"; do expr+=(-e "s|{${kv%%=*}}|${kv#*=}|g"); done
    sed "${expr[@]}" "$tmpl" >"$out"
}
