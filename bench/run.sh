#!/usr/bin/env bash
# Quiver's benchmark runner: measures Quiver beside Redis (online reads) and DuckDB (point-in-time
# retrieval) side by side on this machine in one run, and prints one table of medians.
#
#   bench/run.sh [--quick] [--size small|full|large] [--runs N] [--seconds S] [--bin-dir DIR] [--keep]
#
# It builds the binaries, installs redis-server/redis-tools (apt-get) and duckdb (pip) if they are
# missing and it can, starts Redis on a free loopback port with persistence off, runs
# `quiver-bench online` (1 node, then 3), `quiver-bench redis` and `quiver-bench offline` N times
# (interleaved), prints the table, and stops everything it started. Figures are never asserted.
#
#   --quick        seconds, for CI: 5,000 entities, 0.5 s per figure, a 20k-row offline set, 1 run
#   --size S       offline data set: small (1M rows, 100k spine), full (10M, 1M) or large (40M, 4M);
#                  default small and full
#   --runs N       rounds of measurement; the table shows medians (default 3, 1 with --quick)
#   --seconds S    seconds per read and push figure (default 5)
#   --bin-dir DIR  no build: quiver-node and quiver-bench from DIR (CI's target/debug); not for figures
#   --keep         keep the working directory (JSON figures, logs) instead of removing it
#
# Binaries go to $CARGO_TARGET_DIR (default target/), as cargo puts them.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0 bin="" keep=0 sizes="small full" runs="" seconds=5
usage() { sed -n "5,17s/^# \{0,1\}//p" "$0"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --keep) keep=1 ;;
        --size) sizes="${2:?--size needs small, full or large}"; shift ;;
        --runs) runs="${2:?--runs needs a number}"; shift ;;
        --seconds) seconds="${2:?--seconds needs a number}"; shift ;;
        --bin-dir) bin="${2:?--bin-dir needs a directory}"; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench/run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
case "$sizes" in small | full | large | "small full") ;; *) echo "bench/run.sh: --size is small, full or large" >&2; exit 2 ;; esac
[ -n "$runs" ] || { [ "$quick" = 1 ] && runs=1 || runs=3; }

# --- what it needs: installed only when missing, and only where it can be --------------------
have_redis() { command -v redis-server && command -v redis-benchmark && command -v redis-cli; } >/dev/null 2>&1
if ! have_redis && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing redis-server and redis-tools (apt-get)"
    running_before=$(pgrep -x redis-server || true)
    export DEBIAN_FRONTEND=noninteractive
    apt_install() { apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null; }
    apt_install || { apt-get update -qq && apt_install; } || echo "could not install Redis"
    # The package may start its own service where nothing forbids it: that one is ours to stop.
    if [ -z "$running_before" ] && pgrep -x redis-server >/dev/null && command -v service >/dev/null; then
        service redis-server stop >/dev/null 2>&1 || true
    fi
fi
have_redis || echo "redis-server/redis-benchmark not found and not installable here: Redis figures skipped"
if ! python3 -c 'import duckdb' >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
    echo "== installing duckdb (pip)"
    python3 -m pip install --quiet --disable-pip-version-check duckdb >/dev/null 2>&1 || echo "could not install duckdb"
fi
python3 -c 'import duckdb' >/dev/null 2>&1 || echo "python3 cannot import duckdb: DuckDB figures skipped"

# --- build ---------------------------------------------------------------------------------
if [ -z "$bin" ]; then
    echo "== cargo build --release -p quiver-node -p quiver-bench --bins"
    cargo build --release -p quiver-node -p quiver-bench --bins
    bin="${CARGO_TARGET_DIR:-target}/release"
fi
for program in quiver-bench quiver-node; do
    [ -x "$bin/$program" ] || { echo "bench/run.sh: no $bin/$program" >&2; exit 1; }
done
bin=$(cd "$bin" && pwd)
bench="$bin/quiver-bench"
export QUIVER_BIN_DIR="$bin" # the quiver-node that quiver-bench starts

# --- everything started from here on is stopped on exit -------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/quiver-bench.XXXXXX")
mkdir "$work/figures" "$work/logs" "$work/tmp"
redis_pid="" bench_pid="" failed=0
cleanup() {
    local code=$?
    # quiver-bench runs in a session of its own: its group holds the nodes it started.
    if [ -n "$bench_pid" ]; then
        echo "stopped"
        kill -TERM -- "-$bench_pid" 2>/dev/null || kill -TERM "$bench_pid" 2>/dev/null || true
        wait "$bench_pid" 2>/dev/null || true
        # The nodes shut down on SIGTERM; give them 5 s before SIGKILL.
        for _ in $(seq 50); do
            kill -0 -- "-$bench_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$bench_pid" 2>/dev/null || true
    fi
    if [ -n "$redis_pid" ]; then
        kill -TERM "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
    fi
    # The data sets and node directories of quiver-bench (its TMPDIR) go whatever happened.
    rm -rf "$work/tmp"
    if [ "$keep" = 1 ] || [ "$code" != 0 ] || [ "$failed" = 1 ]; then
        echo "figures and logs kept in $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A loopback port nothing answers on (Redis binding it is still checked below).
free_port() {
    local port
    for _ in $(seq 100); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

redis_port=""
if have_redis; then
    for _ in 1 2 3; do
        port=$(free_port)
        redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --daemonize no \
            --dir "$work" --logfile "$work/redis.log" &
        redis_pid=$!
        for _ in $(seq 100); do
            if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
                redis_port=$port
                break
            fi
            kill -0 "$redis_pid" 2>/dev/null || break
            sleep 0.1
        done
        [ -n "$redis_port" ] && break
        kill "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
        redis_pid=""
    done
    if [ -n "$redis_port" ]; then
        echo "== redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') on 127.0.0.1:$redis_port (pid $redis_pid, no persistence)"
    else
        echo "Redis did not start (see $work/redis.log): Redis figures skipped"
    fi
fi

# The Python client's figures (and DuckDB's, in the same interpreter): its wheel (maturin, the
# profile of the binaries measured) in a virtual environment with pandas and duckdb; skipped
# where it cannot be built.
python_env() {
    local profile=release
    [ "$(basename "$bin")" = debug ] && profile=dev
    python3 -m maturin --version >/dev/null 2>&1 || python3 -m pip install -q maturin >/dev/null 2>&1 || return 1
    python3 -m maturin build --quiet --manifest-path python/Cargo.toml --profile "$profile" -o "$work/wheels" \
        >"$work/logs/wheel.log" 2>&1 || return 1
    python3 -m venv "$work/venv" || return 1
    "$work/venv/bin/pip" install -q --disable-pip-version-check "$work"/wheels/quiver-*.whl pandas duckdb \
        >>"$work/logs/wheel.log" 2>&1 || return 1
    export QUIVER_BENCH_PYTHON="$work/venv/bin/python"
}
echo "== the Python client's wheel and its environment"
python_env || echo "could not build the Python client or its environment (see $work/logs/wheel.log): its figures skipped"

# One measurement: `quiver-bench ARGS --format json` into figures/NAME.json, its text into logs/.
measure() {
    local name=$1
    shift
    local started=$SECONDS status=0
    printf '   %-34s' "$name"
    if command -v setsid >/dev/null; then
        TMPDIR="$work/tmp" setsid "$bench" "$@" --format json >"$work/figures/$name.json" 2>"$work/logs/$name.log" &
    else
        TMPDIR="$work/tmp" "$bench" "$@" --format json >"$work/figures/$name.json" 2>"$work/logs/$name.log" &
    fi
    bench_pid=$!
    wait "$bench_pid" || status=$?
    bench_pid=""
    if [ "$status" = 0 ]; then
        echo "$((SECONDS - started)) s"
    else
        echo "failed (exit $status); the end of its log:"
        tail -n 20 "$work/logs/$name.log" | sed 's/^/     /'
        rm -f "$work/figures/$name.json"
        failed=1
    fi
}

common=(--seconds "$seconds")
[ "$quick" = 1 ] && common=(--quick)
offline_sizes=$sizes
[ "$quick" = 1 ] && offline_sizes=quick
for round in $(seq "$runs"); do
    echo "== round $round of $runs"
    measure "online-1node-$round" online "${common[@]}"
    measure "online-3nodes-$round" online --nodes 3 "${common[@]}"
    [ -n "$redis_port" ] && measure "redis-$round" redis --port "$redis_port" "${common[@]}"
    for size in $offline_sizes; do
        if [ "$size" = quick ]; then
            measure "offline-quick-$round" offline --quick
        else
            measure "offline-$size-$round" offline --size "$size"
        fi
    done
done

echo
table_args=("$work/figures")
[ "$quick" = 1 ] && table_args+=(--quick)
"$bench" table "${table_args[@]}"
[ "$failed" = 0 ] || { echo "some measurements failed: see the logs above" >&2; exit 1; }
