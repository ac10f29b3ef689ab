#!/usr/bin/env bash
# The io_uring spike's measurement: CPU per request of uring-spike over
# epoll (tokio) and over io_uring (monoio), plain HTTP/1.1 and TLS
# keep-alive, with gatehouse itself on the same load for reference.
#
#   bench/uring-spike/run.sh            # REPEAT rounds of every mode
#   bench/uring-spike/run.sh strace     # system calls per request, one run per spike mode
#   bench/uring-spike/run.sh events     # per request: syscalls and io_uring requests (perf stat tracepoints)
#   bench/uring-spike/run.sh perf       # kernel/user split (perf, by DSO), one run per spike mode
#
# Build first (this script never builds, so no build runs on the machine
# while it measures):
#   (cd bench/uring-spike && cargo build --release)
#   cargo build --release --bin gatehouse --example bench-backend
# with the same CARGO_TARGET_DIR for both (default: target/ of the repo).
#
# Placement: the proxy alone on CPU 0 (taskset -c 0); wrk (-t1 -c64) and
# the backend share CPU 1. CPU µs per request = (utime + stime) delta of the
# proxy process (all its threads, /proc/PID/stat) over the measured wrk run
# / the requests wrk reports. A WARM-second wrk run precedes each measured
# one. Rounds alternate the order of the modes.
#
# Modes: IO-SEC, IO one of epoll, uring (io_uring, default setup), uringcoop
# (IORING_SETUP_COOP_TASKRUN), uringdefer (SINGLE_ISSUER + DEFER_TASKRUN),
# gatehouse; SEC one of plain, tls.
#
# Env: REPEAT (3), DUR (8s), WARM (2s), CONNS (64), MODES (all ten),
#      OUT (bench/results/<date>-uring), PORT_BASE (18500).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/release
SPIKE=$TARGET/uring-spike
GH=$TARGET/gatehouse
BACKEND=$TARGET/examples/bench-backend
REPEAT=${REPEAT:-3}
DUR=${DUR:-8s}
WARM=${WARM:-2s}
CONNS=${CONNS:-64}
MODES=${MODES:-epoll-plain uring-plain uringcoop-plain uringdefer-plain gatehouse-plain epoll-tls uring-tls uringcoop-tls uringdefer-tls gatehouse-tls}
OUT=${OUT:-$ROOT/bench/results/2026-12-07-uring}
PORT_BASE=${PORT_BASE:-18500}
B_PORT=$((PORT_BASE + 1)) P_PORT=$((PORT_BASE + 10)) A_PORT=$((PORT_BASE + 11))
TCK=$(getconf CLK_TCK)

for b in "$SPIKE" "$GH" "$BACKEND"; do
  [[ -x $b ]] || { echo "missing $b: build first (see the top of $0)" >&2; exit 1; }
done
for t in wrk taskset openssl python3; do
  command -v "$t" >/dev/null || { echo "needs $t" >&2; exit 1; }
done
mkdir -p "$OUT"
WORK=$(mktemp -d)
PROXY_PID=
cleanup() {
  [[ -n $PROXY_PID ]] && kill "$PROXY_PID" 2>/dev/null || true
  [[ -n ${BACKEND_PID:-} ]] && kill "$BACKEND_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "[$(date -u +%T)] $*" >&2; }

# An ECDSA P-256 self-signed cert, as bench/run.sh makes for its TLS peers.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
  -subj /CN=localhost -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/secret"

# gatehouse: one worker thread, access log off, one backend, no auth.
gh_conf() {  # gh_conf plain|tls -> path
  local f=$WORK/gatehouse-$1.toml
  {
    printf '[server]\nlisten = "127.0.0.1:%s"\nsecret_file = "%s"\nworker_threads = 1\n' \
      "$P_PORT" "$WORK/secret"
    if [[ $1 == tls ]]; then
      printf '[server.tls]\ncert = "%s"\nkey = "%s"\nmin_version = "1.3"\nalpn = ["http/1.1"]\n' \
        "$WORK/tls.crt" "$WORK/tls.key"
    fi
    printf '[admin]\nlisten = "127.0.0.1:%s"\n[log]\naccess_log = false\n' "$A_PORT"
    printf '[[upstreams]]\nname = "pool"\nbackends = ["127.0.0.1:%s"]\n' "$B_PORT"
    printf '[[routes]]\nname = "plain"\npath_prefix = "/"\nupstream = "pool"\nauth = "none"\n'
  } >"$f"
  echo "$f"
}

wait_port() {
  local i
  for ((i = 0; i < 100; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2
  return 1
}

start_proxy() {  # start_proxy MODE: sets PROXY_PID and URL
  local io=${1%-*} sec=${1#*-} scheme=http
  [[ $sec == tls ]] && scheme=https
  URL=$scheme://127.0.0.1:$P_PORT/
  if [[ $io == gatehouse ]]; then
    taskset -c 0 "$GH" --config "$(gh_conf "$sec")" >"$WORK/proxy.log" 2>&1 &
  else
    local tls=() setup=()
    [[ $sec == tls ]] && tls=(--tls "$WORK/tls.crt" "$WORK/tls.key")
    # uringcoop / uringdefer: io_uring with COOP_TASKRUN / DEFER_TASKRUN
    [[ $io == uring?* ]] && setup=(--uring-setup "${io#uring}") && io=uring
    taskset -c 0 "$SPIKE" --io "$io" "${setup[@]}" --listen "127.0.0.1:$P_PORT" \
      --backend "127.0.0.1:$B_PORT" "${tls[@]}" >"$WORK/proxy.log" 2>&1 &
  fi
  PROXY_PID=$!
  wait_port "$P_PORT" || { cat "$WORK/proxy.log" >&2; exit 1; }
}

stop_proxy() {
  kill "$PROXY_PID" 2>/dev/null || true
  wait "$PROXY_PID" 2>/dev/null || true
  PROXY_PID=
  # the next proxy binds the same port
  sleep 0.3
}

cpu_ticks() {  # utime + stime of the whole process, in clock ticks
  local s
  s=$(<"/proc/$1/stat")
  s=${s##*) }   # the fields after the command name
  awk '{print $12 + $13}' <<<"$s"
}

wrk_run() {  # wrk_run DURATION URL
  taskset -c 1 wrk -t1 -c"$CONNS" -d"$1" --latency "$2"
}

start_backend() {
  taskset -c 1 "$BACKEND" "127.0.0.1:$B_PORT=b1" >"$WORK/backend.log" 2>&1 &
  BACKEND_PID=$!
  wait_port "$B_PORT"
}

measure() {  # measure ROUND MODE -> a row in results.tsv, raw wrk output beside it
  local round=$1 mode=$2 raw t0 t1
  raw=$OUT/wrk-$mode-r$round.txt
  start_proxy "$mode"
  wrk_run "$WARM" "$URL" >/dev/null
  t0=$(cpu_ticks "$PROXY_PID")
  wrk_run "$DUR" "$URL" >"$raw"
  t1=$(cpu_ticks "$PROXY_PID")
  stop_proxy
  python3 - "$raw" "$round" "$mode" "$((t1 - t0))" "$TCK" >>"$OUT/results.tsv" <<'PY'
import re, sys
raw, rnd, mode, ticks, tck = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
t = open(raw).read()
req = int(re.search(r"(\d+) requests in", t).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", t)
p99 = float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]
errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", t))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
errs += int(non2xx.group(1)) if non2xx else 0
us = ticks * 1e6 / tck / req
print(f"{rnd}\t{mode}\t{us:.3f}\t{rps:.0f}\t{p99:.0f}\t{req}\t{errs}")
PY
  log "$(tail -1 "$OUT/results.tsv")"
}

summary() {
  python3 - "$OUT/results.tsv" <<'PY' | tee "$OUT/summary.md"
import sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if not l.startswith("round")]
by = {}
for r in rows:
    by.setdefault(r[1], []).append((float(r[2]), float(r[3]), float(r[4]), int(r[6])))
order = [f"{io}-{sec}" for sec in ("plain", "tls")
         for io in ("epoll", "uring", "uringcoop", "uringdefer", "gatehouse")]
print("| mode | CPU µs/req median (min-max) | req/s median (min-max) | p99 µs median (min-max) | errors | rounds |")
print("|---|---|---|---|---|---|")
med = {}
for m in [m for m in order if m in by] + [m for m in by if m not in order]:
    v = by[m]
    cols = []
    for i, fmt in ((0, "{:.2f}"), (1, "{:.0f}"), (2, "{:.0f}")):
        xs = [x[i] for x in v]
        cols.append(f"{fmt.format(st.median(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})")
    med[m] = st.median(x[0] for x in v)
    print(f"| {m} | {' | '.join(cols)} | {sum(x[3] for x in v)} | {len(v)} |")
print()
pr = {}
for r in rows:
    pr.setdefault(r[0], {})[r[1]] = float(r[2])
for sec in ("plain", "tls"):
    for io in ("uring", "uringcoop", "uringdefer", "gatehouse"):
        e, u = med.get(f"epoll-{sec}"), med.get(f"{io}-{sec}")
        if not (e and u):
            continue
        # per-round ratios too: a round runs the modes close in time
        rr = [d[f"{io}-{sec}"] / d[f"epoll-{sec}"] for d in pr.values()
              if f"{io}-{sec}" in d and f"epoll-{sec}" in d]
        print(f"- {sec}: CPU/request {io}/epoll = {u / e:.3f} (medians); per round: "
              + ", ".join(f"{x:.3f}" for x in rr))
PY
}

# strace -c over a short wrk run against one mode: system calls per request.
syscalls() {
  command -v strace >/dev/null || { echo "needs strace" >&2; exit 1; }
  local mode raw
  for mode in ${MODES}; do
    [[ $mode == gatehouse-* ]] && continue
    raw=$OUT/strace-$mode.txt
    start_proxy "$mode"
    wrk_run "$WARM" "$URL" >/dev/null
    strace -c -f -p "$PROXY_PID" -o "$WORK/strace.txt" &
    local st=$!
    sleep 0.5
    wrk_run 2s "$URL" >"$WORK/wrk.txt"
    kill -INT "$st"; wait "$st" || true
    stop_proxy
    { cat "$WORK/wrk.txt"; echo; cat "$WORK/strace.txt"; } >"$raw"
    python3 - "$raw" "$mode" <<'PY' | tee -a "$OUT/syscalls.md"
import re, sys
t = open(sys.argv[1]).read()
req = int(re.search(r"(\d+) requests in", t).group(1))
calls = {}
for l in t[t.index("% time"):].splitlines():
    f = l.split()
    # % time, seconds, usecs/call, calls, [errors], syscall
    if len(f) >= 5 and f[3].isdigit() and f[-1] != "total":
        calls[f[-1]] = int(f[3])
tot = sum(calls.values())
top = sorted(calls.items(), key=lambda kv: -kv[1])[:6]
print(f"| {sys.argv[2]} | {req} | {tot/req:.2f} | " + ", ".join(f"{k} {v/req:.2f}" for k, v in top) + " |")
PY
  done
}

# perf stat on tracepoints, without strace's slow-down: system calls and
# io_uring requests (submitted, completed, parked on a poll, task_work
# items, punted to a worker thread) per request.
events() {
  command -v perf >/dev/null || { echo "needs perf" >&2; exit 1; }
  local mode ev=raw_syscalls:sys_enter
  for e in submit_req complete poll_arm task_add queue_async_work; do ev+=,io_uring:io_uring_$e; done
  for mode in ${MODES}; do
    [[ $mode == gatehouse-* ]] && continue
    start_proxy "$mode"
    wrk_run "$WARM" "$URL" >/dev/null
    perf stat -x, -e "$ev" -p "$PROXY_PID" -o "$WORK/stat.txt" &
    local ps=$!
    sleep 0.3
    wrk_run 4s "$URL" >"$WORK/wrk.txt"
    kill -INT "$ps"; wait "$ps" || true
    stop_proxy
    { cat "$WORK/wrk.txt"; echo; cat "$WORK/stat.txt"; } >"$OUT/events-$mode.txt"
    python3 - "$OUT/events-$mode.txt" "$mode" <<'PY' | tee -a "$OUT/events.md"
import re, sys
t = open(sys.argv[1]).read()
req = int(re.search(r"(\d+) requests in", t).group(1))
n = {}
for l in t.splitlines():
    f = l.split(",")
    if len(f) > 3 and f[0].isdigit():
        n[f[2].split(":")[-1].replace("io_uring_", "")] = int(f[0])
print(f"| {sys.argv[2]} | {req} | " + " | ".join(f"{n.get(k, 0) / req:.2f}" for k in
      ("sys_enter", "submit_req", "complete", "poll_arm", "task_add", "queue_async_work")) + " |")
PY
  done
}

# Samples grouped by what they are for (first matching pattern wins).
PERF_GROUPS='
import re, sys
groups = [
    ("io_uring (kernel)", r"\[k\] (__)?io_|\[k\] io_uring"),
    ("epoll (kernel)", r"\[k\] (ep_|do_epoll|__x64_sys_epoll|ep_poll)"),
    ("syscall entry/exit", r"\[k\] (entry_SYSCALL|do_syscall_64|syscall_exit|syscall_return|__x64_sys_|x64_sys_call|irqentry_exit_to_user_mode|exit_to_user_mode)"),
    ("spin lock wait", r"\[k\] __pv_queued_spin_lock_slowpath"),
    ("TCP/IP + sockets (kernel)", r"\[k\] (_?_?tcp|_?_?ip|_?_?skb|_?_?sock|sk_|__sk|_?_?inet|__dev|netif|__netif|process_backlog|bbr|loopback|net_rx|__napi|_copy_|__check_object|tcp_)"),
    ("other kernel", r"\[k\]"),
    ("monoio + compat", r"monoio"),
    ("tokio", r"tokio::(runtime|net|io::poll_evented|task|sync)|mio::"),
    ("rustls / aws-lc", r"rustls|aws_lc|aes_|gcm_|chacha"),
    ("hyper + http", r"hyper|http::|httparse|bytes::"),
    ("libc (malloc, memcpy)", r"libc"),
    ("other user", r"."),
]
tot = {g: 0.0 for g, _ in groups}
for l in sys.stdin:
    m = re.match(r"\s*([\d.]+)%\s+(.*)", l)
    if not m:
        continue
    for g, pat in groups:
        if re.search(pat, m.group(2)):
            tot[g] += float(m.group(1))
            break
print(f"| {sys.argv[1]} | " + " | ".join(f"{tot[g]:.1f}" for g, _ in groups) + " |")
'

# perf: where the proxy's CPU goes, kernel against user space, by DSO.
profile() {
  command -v perf >/dev/null || { echo "needs perf" >&2; exit 1; }
  local mode
  for mode in ${MODES}; do
    [[ $mode == gatehouse-* ]] && continue
    start_proxy "$mode"
    wrk_run "$WARM" "$URL" >/dev/null
    perf record -q -e cpu-clock -g -p "$PROXY_PID" -o "$WORK/perf.data" -- sleep 4 2>/dev/null &
    local pf=$!
    wrk_run 4s "$URL" >/dev/null
    wait "$pf" || true
    stop_proxy
    { perf report -i "$WORK/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null \
      | grep -v -e '^#' -e '^$' | head -12 || true; } >"$OUT/perf-dso-$mode.txt"
    { perf report -i "$WORK/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null \
      | grep -v -e '^#' -e '^$' | head -50 || true; } >"$OUT/perf-sym-$mode.txt"
    perf report -i "$WORK/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null \
      | python3 -c "$PERF_GROUPS" "$mode" | tee -a "$OUT/perf-groups.md"
    log "$mode: $(head -3 "$OUT/perf-dso-$mode.txt" | tr -s ' ' | tr '\n' ';')"
  done
}

log "load: $(uptime)"
start_backend
case ${1:-run} in
  strace)
    printf '| mode | requests | syscalls/request | top calls per request |\n|---|---|---|---|\n' >"$OUT/syscalls.md"
    syscalls ;;
  perf)
    printf '| mode | io_uring (k) | epoll (k) | syscall entry/exit + task_work (k) | spin lock wait (k) | TCP/IP + sockets (k) | other kernel | monoio + compat | tokio | rustls/aws-lc | hyper + bytes | libc | other user |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n' >"$OUT/perf-groups.md"
    profile ;;
  events)
    printf '| mode | requests | syscalls | SQEs submitted | CQEs | poll arms | task_work adds | io-wq punts |\n|---|---|---|---|---|---|---|---|\n' >"$OUT/events.md"
    events ;;
  run)
    printf 'round\tmode\tcpu_us_per_req\treq_per_s\tp99_us\trequests\terrors\n' >"$OUT/results.tsv"
    read -r -a modes <<<"$MODES"
    for ((r = 1; r <= REPEAT; r++)); do
      order=("${modes[@]}")
      if ((r % 2 == 0)); then  # even rounds run the modes in reverse
        order=(); for ((i = ${#modes[@]} - 1; i >= 0; i--)); do order+=("${modes[i]}"); done
      fi
      for m in "${order[@]}"; do measure "$r" "$m"; done
    done
    summary ;;
  *) echo "usage: $0 [run|strace|events|perf]" >&2; exit 2 ;;
esac
log "load: $(uptime)"
