#!/usr/bin/env bash
# WebSocket library benchmark: tokio-tungstenite vs fastwebsockets behind hyper 1.
#
#   bench/wslib/run.sh                 # all modes, default parameters
#   MODES="fastwebsockets floor" ECHO_SECS=5 bench/wslib/run.sh
#
# Builds release; then for each server mode: starts the server pinned to core 0, runs the
# load client pinned to core 1, stops the server by its PID. 3 echo runs per mode (in
# interleaved rounds, fresh server each, repeated if other processes were busy), then 1
# idle run per mode against a fresh server; prints a markdown table. Traffic goes to
# 127.0.0.1 only; every step is bounded by `timeout`.
#
# A mode is `name` or `name:READ_BUF_BYTES` (the latter only means something for
# tungstenite-tuned: it overrides its 4 KiB read buffer). `floor` is not a library but a
# hand-rolled minimal frame echo on the same hyper/tokio path (per-connection floor).
set -euo pipefail

cd "$(dirname "$0")"

MODES=${MODES:-"tungstenite tungstenite-tuned tungstenite-tuned:1024 fastwebsockets floor"}
PORT=${PORT:-19091}
ECHO_REPS=${ECHO_REPS:-3}
ECHO_CONNS=${ECHO_CONNS:-100}
ECHO_INFLIGHT=${ECHO_INFLIGHT:-4}
ECHO_SECS=${ECHO_SECS:-10}
ECHO_SIZE=${ECHO_SIZE:-32}
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE_SECS=${IDLE_SECS:-10}
BIG_CONNS=${BIG_CONNS:-200}
BIG_SIZE=${BIG_SIZE:-1048576}
LOG_DIR=${LOG_DIR:-target/run-logs}
QUIET_PCT=${QUIET_PCT:-10}    # % of one core that other processes may use before a run
QUIET_WAIT=${QUIET_WAIT:-900} # seconds to wait for that at most, then go ahead anyway
OTHERS_MAX=${OTHERS_MAX:-10}  # repeat an echo run if other processes used more (% of a core)
UNACC_MAX=${UNACC_MAX:-15}    # ... or if busy time not charged to server/client was higher
ECHO_RETRIES=${ECHO_RETRIES:-4}
SKIP_IDLE=${SKIP_IDLE:-0}     # 1: echo runs only

# 10k connections need >10k descriptors on each side.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((IDLE_CONNS + 100)) ]; then
    echo "ulimit -n is $(ulimit -n), too low for $IDLE_CONNS connections" >&2
    exit 1
fi

timeout 900 cargo build --release --quiet
SERVER=target/release/server
LOAD=target/release/load
mkdir -p "$LOG_DIR"
STAMP=$(date +%Y%m%d-%H%M%S)
LOG="$LOG_DIR/run-$STAMP.log"
: >"$LOG"

SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 20); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
trap stop_server EXIT

# start_server NAME READ_BUF
start_server() {
    local errlog="$LOG_DIR/server-$STAMP.err"
    : >"$errlog"
    WSLIB_READ_BUF="$2" taskset -c 0 "$SERVER" "$1" "$PORT" 2>"$errlog" &
    SERVER_PID=$!
    for _ in $(seq 50); do
        grep -q listening "$errlog" && return 0
        sleep 0.1
    done
    echo "server $1 did not start" >&2
    cat "$errlog" >&2
    exit 1
}

# field KEY LINE -> value of KEY=value in a RESULT line
field() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" <<<"$2"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# wait_quiet: this machine may be shared; wait (bounded) until other processes use less
# than QUIET_PCT % of one core, in each of 3 consecutive seconds, from /proc/stat.
wait_quiet() {
    local deadline=$((SECONDS + QUIET_WAIT)) quiet=0
    while :; do
        local a b
        a=($(head -1 /proc/stat))
        sleep 1
        b=($(head -1 /proc/stat))
        local busy=$(( (b[1]+b[2]+b[3]+b[6]+b[7]+b[8]) - (a[1]+a[2]+a[3]+a[6]+a[7]+a[8]) ))
        # ticks are 1/100 s: busy ticks over 1 s == % of one core
        if [ "$busy" -le "$QUIET_PCT" ]; then
            quiet=$((quiet + 1))
            # 3 quiet seconds in a row
            if [ "$quiet" -ge 3 ]; then return 0; fi
            continue
        fi
        quiet=0
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "   (machine not quiet: ${busy}% of a core busy; going ahead)" | tee -a "$LOG"
            return 0
        fi
    done
}

declare -A RATES P50S P99S CPUS USPER OTHERS
# Echo: interleaved rounds (mode A, B, C, ..., A, B, C, ...) with a fresh server per run,
# so slow drifts of the machine spread over all modes. A run during which other processes
# used more than OTHERS_MAX % of a core is repeated (at most ECHO_RETRIES times).
for rep in $(seq "$ECHO_REPS"); do
    for spec in $MODES; do
        name=${spec%%:*}
        readbuf=""
        if [ "$spec" != "$name" ]; then readbuf=${spec#*:}; fi
        for attempt in $(seq $((ECHO_RETRIES + 1))); do
            wait_quiet
            echo "== echo $spec round $rep attempt $attempt" | tee -a "$LOG"
            start_server "$name" "$readbuf"
            out=$(timeout $((ECHO_SECS + 60)) taskset -c 1 "$LOAD" echo --port "$PORT" \
                --conns "$ECHO_CONNS" --inflight "$ECHO_INFLIGHT" --secs "$ECHO_SECS" \
                --size "$ECHO_SIZE" --pid "$SERVER_PID" 2>&1) || { echo "$out" >&2; exit 1; }
            stop_server
            echo "$out" | tee -a "$LOG"
            r=$(grep '^RESULT' <<<"$out")
            others=$(field others_pct "$r")
            unacc=$(field unacc_pct "$r")
            if [ "$others" -le "$OTHERS_MAX" ] && [ "$unacc" -le "$UNACC_MAX" ]; then break; fi
        done
        RATES[$spec]+="$(field rate "$r") " P50S[$spec]+="$(field p50_us "$r") "
        P99S[$spec]+="$(field p99_us "$r") " CPUS[$spec]+="$(field server_cpu_pct "$r") "
        USPER[$spec]+="$(field server_cpu_us_per_echo "$r") " OTHERS[$spec]+="$others/$unacc "
    done
done

ROWS=()
for spec in $MODES; do
    name=${spec%%:*}
    readbuf=""
    if [ "$spec" != "$name" ]; then readbuf=${spec#*:}; fi
    big=$BIG_CONNS
    if [ "$name" = floor ]; then big=0; fi # floor only handles frames <= 125 bytes
    r=""
    if [ "$SKIP_IDLE" != 1 ]; then
        echo "== idle $spec" | tee -a "$LOG"
        start_server "$name" "$readbuf"
        sleep 0.5
        out=$(timeout $((IDLE_SECS + 240)) taskset -c 1 "$LOAD" idle --port "$PORT" \
            --conns "$IDLE_CONNS" --secs "$IDLE_SECS" --big-conns "$big" --big-size "$BIG_SIZE" \
            --pid "$SERVER_PID" 2>&1) || { echo "$out" >&2; exit 1; }
        stop_server
        echo "$out" | tee -a "$LOG"
        r=$(grep '^RESULT' <<<"$out")
    else
        big=0
    fi

    big_cell="n/a"
    small_cell="n/a"
    if [ "$big" -gt 0 ]; then
        big_cell="+$(field big_kib_per_conn "$r")"
        small_cell="+$(field after_small_kib_per_conn "$r")"
    fi
    # shellcheck disable=SC2086
    ROWS+=("| $spec | $(median ${RATES[$spec]}) ($(echo ${RATES[$spec]} | sed 's/ /, /g')) \
| $(median ${P50S[$spec]}) | $(median ${P99S[$spec]}) | $(median ${CPUS[$spec]})% / $(median ${USPER[$spec]}) \
| $(echo ${OTHERS[$spec]} | sed 's/ /, /g') \
| $(field kib_per_conn "$r") | $(field rss_base_kib "$r") | $(field rss_idle_kib "$r") \
| $big_cell | $small_cell | $(field rss_after_close_kib "$r") |")
done

{
    echo
    echo "echo: $ECHO_CONNS conns x $ECHO_INFLIGHT in flight, $ECHO_SIZE-byte text messages, ${ECHO_SECS}s (+1s warm-up), $ECHO_REPS runs, median (all runs); latency and CPU columns are medians of the runs."
    echo "idle: $IDLE_CONNS conns, one small message each, then ${IDLE_SECS}s idle; big: one $BIG_SIZE-byte message on $BIG_CONNS of them, one at a time, then one small message on each."
    echo
    echo "| server mode | echoes/s | p50 µs | p99 µs | server CPU % / µs per echo | others / unaccounted CPU % per run | KiB per idle conn | baseline RSS KiB | RSS with ${IDLE_CONNS} idle KiB | KiB per conn after 1 big msg | … after 1 more small msg | RSS after all closed KiB |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
} | tee -a "$LOG"
echo
echo "log: bench/wslib/$LOG"
