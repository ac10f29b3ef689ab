#!/usr/bin/env bash
# gatehouse against nginx and HAProxy on this machine, scenario by scenario,
# in one run: each scenario runs gatehouse and its peers one after the
# other, for REPEAT rounds (the order flips every round), and the summary
# gives medians, spread and per-round ratios gatehouse/peer.
#
#   bench/run.sh                      # everything, 3 rounds (about 25 min)
#   bench/run.sh plain tls jwt-es256  # some scenarios
#   REPEAT=1 DURATION=4s bench/run.sh # quicker, noisier
#   bench/run.sh list                 # scenarios
#   bench/run.sh fwd-session fwd-jwt  # forward-auth: nginx auth_request to
#                                     # gatehouse vs gatehouse in-line vs nginx alone
#
# Knobs (env): REPEAT=3 DURATION=8s WARMUP=2s CONNS=64 BIG_CONNS=16
#   H2_CONNS=8 H2_STREAMS=8 IDLE_CONNS=10000 SESSIONS=1000000
#   PROXY_CPU=0 LOAD_CPU=1 QUIET_PCT=15 QUIET_MAX=120
#   CARGO_TARGET_DIR (where cargo builds; default <repo>/target)
# The proxy under test runs alone on PROXY_CPU (taskset); wrk/h2load, the
# backends and Redis share LOAD_CPU. Only loopback addresses are used. Every
# process is started here and stopped by its PID.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
REPEAT=${REPEAT:-3}
DURATION=${DURATION:-8s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-64}
BIG_CONNS=${BIG_CONNS:-16}
H2_CONNS=${H2_CONNS:-8}
H2_STREAMS=${H2_STREAMS:-8}
IDLE_CONNS=${IDLE_CONNS:-10000}
SESSIONS=${SESSIONS:-1000000}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
QUIET_PCT=${QUIET_PCT:-15}
QUIET_MAX=${QUIET_MAX:-120}

OUT=$BENCH/out
RUN=$OUT/run
RESULTS=${RESULTS:-$OUT/results/$(date +%Y%m%d-%H%M%S)}
CERTS=$BENCH/certs
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/release
GH_BIN=$TARGET/gatehouse
BACKEND_BIN=$TARGET/examples/bench-backend
IDLE_BIN=$TARGET/examples/bench-idle
SESSIONS_BIN=$TARGET/examples/session_memory

# For the configs: HAProxy reads "${X}", gatehouse templates go through envsubst.
export BENCH_OUT=$OUT BENCH_CERTS=$CERTS
export BENCH_B1=127.0.0.1:18001 BENCH_B2=127.0.0.1:18002 BENCH_B3=127.0.0.1:18003
export BENCH_GH_PORT=18380 BENCH_GH_TLS_PORT=18743 BENCH_GH_ADMIN=18390 BENCH_REDIS_PORT=18379
export BENCH_SESSION_STORE=memory

ALL="plain tls tls-new h2 jwt-hs256 jwt-rs256 jwt-es256 session-mem session-redis sticky big idle10k sessions-1m fwd-session fwd-jwt"

# describe <scenario>: CLIENT (wrk | h2load | idle | sessions), PROXIES, the
# gatehouse config (GH_CONF, BENCH_SESSION_STORE), what to send (AUTH, COOKIE,
# CLOSE) and the path (PATH_).
describe() {
  CLIENT=wrk PROXIES="gatehouse nginx haproxy" GH_CONF=plain AUTH= COOKIE= CLOSE=0 PATH_=/
  BENCH_SESSION_STORE=memory NCONN=$CONNS
  case $1 in
    plain) ;;
    tls) GH_CONF=tls ;;
    tls-new) GH_CONF=tls CLOSE=1 ;;
    h2) GH_CONF=tls CLIENT=h2load ;;
    jwt-hs256 | jwt-rs256 | jwt-es256) PROXIES="gatehouse haproxy" AUTH=${1#jwt-} ;;
    session-mem) PROXIES="gatehouse haproxy" COOKIE=session ;;
    session-redis) PROXIES="gatehouse haproxy" COOKIE=session BENCH_SESSION_STORE=redis ;;
    sticky) PROXIES="gatehouse haproxy" COOKIE=sticky ;;
    big) PATH_=/big NCONN=$BIG_CONNS ;;
    idle10k) GH_CONF=tls CLIENT=idle ;;
    sessions-1m) PROXIES=gatehouse CLIENT=sessions ;;
    # Forward-auth: nginx asking gatehouse (auth_request) per request, against
    # gatehouse deciding in-line and nginx proxying alone (no auth: the floor).
    fwd-session) PROXIES="gatehouse nginx-fwd nginx" COOKIE=session ;;
    fwd-jwt) PROXIES="gatehouse nginx-fwd nginx" AUTH=es256 ;;
    *) return 1 ;;
  esac
}

# url <scenario> <proxy>
url() {
  local tls=0 port
  case $1 in tls | tls-new | h2 | idle10k) tls=1 ;; esac
  case $2:$1 in
    gatehouse:*) if ((tls)); then port=$BENCH_GH_TLS_PORT; else port=$BENCH_GH_PORT; fi ;;
    nginx:*) if ((tls)); then port=18443; else port=18080; fi ;;
    nginx-fwd:*) port=18082 ;;
    haproxy:jwt-*) port=18181 ;;
    haproxy:session-*) port=18185 ;;
    haproxy:sticky) port=18184 ;;
    haproxy:*) if ((tls)); then port=18543; else port=18180; fi ;;
  esac
  local path=$PATH_
  if [[ $2 == gatehouse || $2 == nginx-fwd ]]; then
    case $1 in jwt-* | fwd-jwt) path=/jwt/ ;; session-* | fwd-session) path=/session/ ;; sticky) path=/sticky/ ;; esac
  fi
  if ((tls)); then echo "https://127.0.0.1:$port$path"; else echo "http://127.0.0.1:$port$path"; fi
}

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

# ---- setup -------------------------------------------------------------------
install_missing() {
  local missing=() pair bin pkg
  for pair in nginx:nginx haproxy:haproxy wrk:wrk h2load:nghttp2-client redis-server:redis-server \
              openssl:openssl python3:python3 curl:curl taskset:util-linux envsubst:gettext-base ps:procps; do
    bin=${pair%%:*} pkg=${pair#*:}
    PATH=$PATH:/usr/sbin:/sbin command -v "$bin" >/dev/null || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  log "installing: ${missing[*]}"
  # policy-rc.d (exit 101) keeps the packages' init scripts from starting the
  # daemons on their default ports; ours run on 18xxx with our own configs.
  local made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  local rc=0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    >>"$RUN/apt.log" 2>&1 || rc=$?
  ((made_policy)) && rm -f /usr/sbin/policy-rc.d
  ((rc == 0)) || { tail -20 "$RUN/apt.log" >&2; die "apt-get failed (see $RUN/apt.log)"; }
}

build() {
  command -v cargo >/dev/null || die "cargo not found (install Rust, e.g. via rustup)"
  log "building gatehouse and the bench helpers (cargo build --release)"
  (cd "$ROOT" && cargo build --release --quiet --bin gatehouse \
    --example bench-backend --example bench-idle --example session_memory)
}

make_certs() {
  mkdir -p "$CERTS"
  (
    cd "$CERTS"
    if [[ ! -s tls.pem ]]; then
      log "generating a self-signed ECDSA P-256 TLS cert in bench/certs/"
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
        -keyout tls.key -out tls.crt -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
      cat tls.crt tls.key >tls.pem                  # HAProxy wants cert + key in one file
    fi
    [[ -s jwt-hs256.secret ]] || openssl rand -hex 32 | tr -d '\n' >jwt-hs256.secret
    [[ -s gateway.secret ]] || openssl rand 32 >gateway.secret
    [[ -s jwt-rs256.key ]] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out jwt-rs256.key 2>/dev/null
    [[ -s jwt-es256.key ]] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out jwt-es256.key
    local k
    for k in rs256 es256; do
      [[ -s jwt-$k.pub.pem ]] || openssl pkey -in "jwt-$k.key" -pubout -out "jwt-$k.pub.pem"
    done
    chmod 600 ./*.key ./*.secret tls.pem
  )
  export BENCH_JWT_SECRET; BENCH_JWT_SECRET=$(cat "$CERTS/jwt-hs256.secret")
  local mk="python3 $BENCH/mkjwt.py"
  TOKEN_hs256=$($mk HS256 "$CERTS/jwt-hs256.secret")
  TOKEN_rs256=$($mk RS256 "$CERTS/jwt-rs256.key")
  TOKEN_es256=$($mk ES256 "$CERTS/jwt-es256.key")
  TOKEN_expired=$($mk ES256 "$CERTS/jwt-es256.key" bench-user -60)
  local sig=${TOKEN_es256##*.}
  TOKEN_bad=${TOKEN_es256%.*}.$([[ ${sig:0:1} == A ]] && echo B || echo A)${sig:1}
  # The login user for the session scenarios, and the HAProxy session map.
  BENCH_PASSWORD=$(openssl rand -hex 12)
  local hash; hash=$(printf '%s' "$BENCH_PASSWORD" | "$GH_BIN" hash-password)
  printf '[[users]]\nusername = "bench-user"\npassword_hash = "%s"\ngroups = ["staff"]\n' "$hash" >"$RUN/users.toml"
  HAPROXY_SESSION=$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n')
  printf '%s bench-user\n' "$HAPROXY_SESSION" >"$RUN/sessions.map"
}

render() {  # render <template> -> path of the rendered config
  local out=$RUN/$(basename "${1%.tmpl}")
  envsubst "$(compgen -e | grep -E '^BENCH_' | sed 's/^/$/' | tr '\n' ' ')" <"$1" >"$out"
  echo "$out"
}

# ---- processes (everything started here is stopped by its PID) ---------------
STARTED=()
on_proxy_cpu() { exec taskset -c "$PROXY_CPU" "$@"; }
on_load_cpu() { exec taskset -c "$LOAD_CPU" "$@"; }
track() { STARTED+=("$1"); echo "$1 $2" >>"$RUN/pids"; }

stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local p
  for p in "${STARTED[@]}"; do stop_pid "$p"; done
  rm -f "$RUN/pids"
}

# A previous run killed hard may have left processes: stop those it recorded,
# if they still are what was recorded.
reap_stale() {
  [[ -f $RUN/pids ]] || return 0
  local pid comm
  while read -r pid comm; do
    [[ $(ps -o comm= -p "$pid" 2>/dev/null) == "$comm" ]] && stop_pid "$pid"
  done <"$RUN/pids"
  rm -f "$RUN/pids"
}

wait_port() {  # wait_port <host:port>: until something listens (10 s)
  local i
  for i in $(seq 100); do
    (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

start_backends() {
  log "starting backends and Redis on CPU $LOAD_CPU"
  on_load_cpu "$BACKEND_BIN" "$BENCH_B1=b1" "$BENCH_B2=b2" "$BENCH_B3=b3" >>"$RUN/backend.log" 2>&1 &
  track $! bench-backend
  on_load_cpu redis-server --bind 127.0.0.1 --port "$BENCH_REDIS_PORT" --save '' --appendonly no \
    --protected-mode yes >>"$RUN/redis.log" 2>&1 &
  track $! redis-server
  local a
  for a in "$BENCH_B1" "$BENCH_B2" "$BENCH_B3" "127.0.0.1:$BENCH_REDIS_PORT"; do
    wait_port "$a" || die "$a did not come up"
  done
}

# start_proxy <proxy> <scenario>: sets PROXY_PID and PROXY_ADDR (and AUX_PID:
# the gatehouse that nginx-fwd asks, on the same CPU, counted with it).
AUX_PID=
start_proxy() {
  local u; u=$(url "$2" "$1"); PROXY_ADDR=${u#*://}; PROXY_ADDR=${PROXY_ADDR%%/*}
  AUX_PID=
  if [[ $1 == nginx-fwd ]]; then
    GATEHOUSE_LOG=warn on_proxy_cpu "$GH_BIN" run --config "$(render "$BENCH/conf/gatehouse.toml.tmpl")" \
      >>"$RUN/gatehouse.log" 2>&1 &
    AUX_PID=$!
    track "$AUX_PID" "$(basename "$GH_BIN" | cut -c1-15)"
    wait_port "127.0.0.1:$BENCH_GH_PORT" || die "gatehouse (forward-auth) did not come up"
  fi
  case $1 in
    gatehouse)
      local conf
      if [[ $GH_CONF == tls ]]; then conf=$(render "$BENCH/conf/gatehouse-tls.toml.tmpl")
      else conf=$(render "$BENCH/conf/gatehouse.toml.tmpl"); fi
      GATEHOUSE_LOG=warn on_proxy_cpu "$GH_BIN" run --config "$conf" >>"$RUN/gatehouse.log" 2>&1 & ;;
    nginx)
      mkdir -p "$RUN/nginx-tmp"
      on_proxy_cpu nginx -p "$OUT/" -c "$BENCH/conf/nginx.conf" -e "$RUN/nginx-error.log" >>"$RUN/nginx.log" 2>&1 & ;;
    nginx-fwd)
      mkdir -p "$RUN/nginx-tmp"
      on_proxy_cpu nginx -p "$OUT/" -c "$BENCH/conf/nginx-fwd.conf" -e "$RUN/nginx-error.log" \
        >>"$RUN/nginx-fwd.log" 2>&1 & ;;
    haproxy)
      on_proxy_cpu haproxy -db -f "$BENCH/conf/haproxy.cfg" >>"$RUN/haproxy.log" 2>&1 & ;;
  esac
  PROXY_PID=$!
  track "$PROXY_PID" "$(basename "$([[ $1 == gatehouse ]] && echo "$GH_BIN" || echo "${1%-fwd}")" | cut -c1-15)"
  wait_port "$PROXY_ADDR" || { tail -5 "$RUN/$1.log" >&2; die "$1 did not come up on $PROXY_ADDR"; }
}

stop_proxy() {
  stop_pid "$PROXY_PID"
  [[ -n $AUX_PID ]] && stop_pid "$AUX_PID"
  local keep=() p
  for p in "${STARTED[@]}"; do [[ $p == "$PROXY_PID" || $p == "$AUX_PID" ]] || keep+=("$p"); done
  STARTED=("${keep[@]}")
}

# ---- measurements ------------------------------------------------------------
tree_pids() {  # a process, its children, and the forward-auth gatehouse with the proxy
  echo "$1"; ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' '
  [[ -n $AUX_PID && $1 == "$PROXY_PID" ]] && echo "$AUX_PID"
  return 0
}
cpu_ticks() {  # utime+stime (clock ticks) of a process and its children (nginx workers)
  local t=0 p
  for p in $(tree_pids "$1"); do
    [[ -r /proc/$p/stat ]] && t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
  done
  echo "$t"
}
rss_kib() {  # resident memory (KiB) of a process and its children
  local kb=0 p
  for p in $(tree_pids "$1"); do
    [[ -r /proc/$p/status ]] && kb=$((kb + $(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status")))
  done
  echo "$kb"
}
machine_busy() {  # whole-machine busy % over one second
  local a b
  a=$(awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i; print t, $5 + $6 }' /proc/stat)
  sleep 1
  b=$(awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i; print t, $5 + $6 }' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x); split(b, y); dt = y[1] - x[1]; di = y[2] - x[2];
    printf "%.0f", (dt > 0 ? 100 * (dt - di) / dt : 0) }'
}
# wait_quiet: until the machine is under QUIET_PCT % busy (our processes are
# idle now), at most QUIET_MAX s. Prints the last sample.
wait_quiet() {
  local waited=0 busy
  while :; do
    busy=$(machine_busy)
    ((busy < QUIET_PCT || waited >= QUIET_MAX)) && break
    ((waited % 20 == 0)) && log "machine busy ($busy %), waiting for it to settle (${waited}s/${QUIET_MAX}s)"
    waited=$((waited + 1))
  done
  echo "$busy"
}

to_us() {  # wrk latency (791.00us, 1.92ms, 1.02s) -> microseconds
  awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
    printf "%.0f", (u == "s" ? n * 1e6 : (u == "ms" ? n * 1e3 : n)) }'
}

# load <url> <outfile> <duration>: prints "rps p50_us p99_us bad requests"
# (bad = non-2xx responses + socket errors).
load() {
  local u=$1 out=$2 dur=$3
  export BENCH_TOKEN= BENCH_COOKIE=$COOKIE_VALUE BENCH_CLOSE=$CLOSE
  if [[ -n $AUTH ]]; then local t=TOKEN_$AUTH; BENCH_TOKEN=${!t}; fi
  if [[ $CLIENT == wrk ]]; then
    (on_load_cpu wrk -t1 -c"$NCONN" -d"$dur" --latency -s "$BENCH/headers.lua" "$u") >"$out" 2>&1 || true
    local rps p50 p99 total non2xx sockerr
    rps=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' "$out")
    p50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$out")")
    p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$out")")
    total=$(awk '/requests in/ { print $1 }' "$out")
    non2xx=$(awk '/Non-2xx/ { print $NF }' "$out")
    sockerr=$(awk '/Socket errors/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' "$out")
    echo "${rps:-0} ${p50:-0} ${p99:-0} $(( ${non2xx:-0} + ${sockerr:-0} )) ${total:-0}"
  else
    local hdr=()
    [[ -n $BENCH_TOKEN ]] && hdr+=(-H "authorization: Bearer $BENCH_TOKEN")
    [[ -n $BENCH_COOKIE ]] && hdr+=(-H "cookie: $BENCH_COOKIE")
    (on_load_cpu h2load -t1 -c"$H2_CONNS" -m"$H2_STREAMS" -D "$dur" "${hdr[@]}" --log-file="$out.log" "$u") \
      >"$out" 2>&1 || true
    local rps done_ bad p50 p99
    rps=$(awk '/^finished in/ { print int($4 + 0.5) }' "$out")
    done_=$(awk '/^requests:/ { print $8 }' "$out")
    bad=$(awk '$2 != 200 { n++ } END { print n + 0 }' "$out.log" 2>/dev/null || echo 0)
    read -r p50 p99 < <(awk '{ print $3 }' "$out.log" 2>/dev/null | sort -n | awk '{ a[NR] = $1 } END {
        if (NR == 0) { print 0, 0; exit }
        i = int(NR * 0.50); j = int(NR * 0.99); if (i < 1) i = 1; if (j < 1) j = 1
        print a[i], a[j] }')
    rm -f "$out.log"
    echo "${rps:-0} ${p50:-0} ${p99:-0} $bad ${done_:-0}"
  fi
}

# ---- functional checks (round 1, before the load) -----------------------------
CHECKS_FAILED=0
check() {  # check <label> <want> <got>
  if [[ $3 == "$2" ]]; then echo "  ok   $1"; else echo "  FAIL $1: got '$3', want '$2'"; CHECKS_FAILED=1; fi
}
status() { curl -sk -o /dev/null -w '%{http_code}' --max-time 5 "$@" || true; }
echoed_user() {  # the X-Auth-User the backend received
  curl -sk --max-time 5 -H 'X-Auth-User: mallory' "$@" | python3 -c \
    'import json, sys; print(json.load(sys.stdin)["headers"].get("x-auth-user", "-"))' 2>/dev/null || echo '?'
}
functional_checks() {  # functional_checks <scenario> <proxy> <url>
  local s=$1 p=$2 u=$3 e=${3%/}/echo
  echo "[$s $p]"
  if [[ $s == fwd-* && $p == nginx ]]; then
    check "GET (no auth, the floor): 200" 200 "$(status "$u")"
  elif [[ -n $AUTH ]]; then
    local t=TOKEN_$AUTH
    check "valid $AUTH token: 200" 200 "$(status -H "Authorization: Bearer ${!t}" "$u")"
    check "no token: 401" 401 "$(status "$u")"
    check "bad signature: 401" 401 "$(status -H "Authorization: Bearer $TOKEN_bad" "$u")"
    check "expired: 401" 401 "$(status -H "Authorization: Bearer $TOKEN_expired" "$u")"
    check "sub forwarded as X-Auth-User, client value dropped" bench-user \
      "$(echoed_user -H "Authorization: Bearer ${!t}" "$e")"
  elif [[ $COOKIE == session ]]; then
    check "session cookie: 200" 200 "$(status -H "Cookie: $COOKIE_VALUE" "$u")"
    check "no cookie: 401" 401 "$(status "$u")"
    check "user forwarded as X-Auth-User, client value dropped" bench-user \
      "$(echoed_user -H "Cookie: $COOKIE_VALUE" "$e")"
  elif [[ $COOKIE == sticky ]]; then
    local seen; seen=$(for _ in 1 2 3 4 5 6; do curl -sk -D - -o /dev/null --max-time 5 -H "Cookie: $COOKIE_VALUE" "$u" |
      awk 'tolower($1) == "x-backend:" { print $2 }' | tr -d '\r'; done | sort -u | tr '\n' ' ')
    check "the affinity cookie pins one backend" 1 "$(wc -w <<<"$seen" | tr -d ' ')"
  else
    check "GET: 200" 200 "$(status "$u")"
  fi
}

# The cookie a scenario sends: a fresh login (gatehouse) or the map entry
# (HAProxy) for sessions; the first response's cookie for stickiness.
cookie_for() {  # cookie_for <proxy> <url>
  case $COOKIE in
    session)
      if [[ $1 == gatehouse || $1 == nginx-fwd ]]; then
        curl -s -D - -o /dev/null --max-time 10 -H 'Content-Type: application/json' \
          -d "{\"username\":\"bench-user\",\"password\":\"$BENCH_PASSWORD\"}" \
          "http://$PROXY_ADDR/.gatehouse/login" |
          awk 'tolower($1) == "set-cookie:" { sub(/;.*/, "", $2); print $2; exit }' | tr -d '\r'
      else
        echo "bench_session=$HAPROXY_SESSION"
      fi ;;
    sticky)
      curl -sk -D - -o /dev/null --max-time 5 "$2" |
        awk 'tolower($1) == "set-cookie:" { sub(/;.*/, "", $2); print $2; exit }' | tr -d '\r' ;;
    *) echo ;;
  esac
}

# ---- one measured run ----------------------------------------------------------
# Columns of results.tsv.
TSV_HEAD="round	scenario	proxy	rps	p50_us	p99_us	bad	requests	cpu_s	us_per_req	rss_start_kib	rss_end_kib	busy_before	proxy_core_busy"

cpustat() { awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= 9; i++) t += $i; print t, $5 + $6 }' /proc/stat; }
busy_between() {
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x); split(b, y); dt = y[1] - x[1]; di = y[2] - x[2];
    printf "%.0f", (dt > 0 ? 100 * (dt - di) / dt : 0) }'
}

run_one() {  # run_one <scenario> <proxy> <round>
  local s=$1 p=$2 r=$3 u
  describe "$s"
  export BENCH_SESSION_STORE
  u=$(url "$s" "$p")
  if [[ $s == session-redis && $p == gatehouse ]]; then
    (on_load_cpu redis-cli -p "$BENCH_REDIS_PORT" flushall) >/dev/null 2>&1 || true
  fi
  start_proxy "$p" "$s"
  COOKIE_VALUE=$(cookie_for "$p" "$u")
  if ((r == 1)); then
    functional_checks "$s" "$p" "$u" >"$RUN/checks.out"
    tee -a "$RESULTS/checks.txt" <"$RUN/checks.out" >&2
  fi
  local bg; bg=$(wait_quiet)
  local rss0; rss0=$(rss_kib "$PROXY_PID")
  local raw=$RESULTS/raw/$s.$p.r$r.txt res c0 t0 t1 rss1
  if [[ $CLIENT == idle ]]; then
    c0=$(cpustat "$PROXY_CPU"); t0=$(cpu_ticks "$PROXY_PID")
    (on_load_cpu "$IDLE_BIN" "$u" "$IDLE_CONNS" "$CERTS/tls.crt") >"$raw" 2>&1 &
    local idle_pid=$! i
    track "$idle_pid" bench-idle
    for i in $(seq 1200); do grep -q '^ready' "$raw" && break; sleep 0.1; done
    t1=$(cpu_ticks "$PROXY_PID")
    sleep 2                                  # let the proxy settle with everything idle
    rss1=$(rss_kib "$PROXY_PID")
    stop_pid "$idle_pid"
    local held; held=$(awk '/^ready/ { print $2 }' "$raw")
    local failed; failed=$(awk '/^ready/ { print $4 }' "$raw")
    # "requests" = connections set up; CPU per connection covers TLS handshake + one request.
    res="0 0 0 ${failed:-$IDLE_CONNS} ${held:-0}"
  else
    load "$u" /dev/null "$WARMUP" >/dev/null
    c0=$(cpustat "$PROXY_CPU"); t0=$(cpu_ticks "$PROXY_PID")
    res=$(load "$u" "$raw" "$DURATION")
    t1=$(cpu_ticks "$PROXY_PID")
    rss1=$(rss_kib "$PROXY_PID")
  fi
  local core; core=$(busy_between "$c0" "$(cpustat "$PROXY_CPU")")
  stop_proxy
  local rps p50 p99 bad n
  read -r rps p50 p99 bad n <<<"$res"
  local cpu_s us_req
  read -r cpu_s us_req < <(awk -v d=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n="$n" 'BEGIN {
    c = d / hz; printf "%.2f %.1f\n", c, (n > 0 ? 1e6 * c / n : 0) }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$s" "$p" "$rps" "$p50" "$p99" \
    "$bad" "$n" "$cpu_s" "$us_req" "$rss0" "$rss1" "$bg" "$core" >>"$RESULTS/results.tsv"
  if [[ $CLIENT == idle ]]; then
    log "$(printf '%-13s %-9s round %s: %s idle TLS connections, RSS %s -> %s KiB, %s us CPU per connection' \
      "$s" "$p" "$r" "$n" "$rss0" "$rss1" "$us_req")"
  else
    log "$(printf '%-13s %-9s round %s: %7s req/s  p50 %6sus  p99 %6sus  %5s us/req  bad %s  bg %s%%' \
      "$s" "$p" "$r" "$rps" "$p50" "$p99" "$us_req" "$bad" "$bg")"
  fi
}

# sessions-1m: the memory a gateway process holding SESSIONS in-memory
# sessions has (no proxy traffic; peers have no equivalent).
run_sessions() {  # run_sessions <round>
  local raw=$RESULTS/raw/sessions-1m.gatehouse.r$1.txt
  wait_quiet >/dev/null
  (on_proxy_cpu "$SESSIONS_BIN" "$SESSIONS") >"$raw" 2>&1
  local total per
  total=$(awk '/total resident/ { print $(NF - 1) }' "$raw")
  per=$(awk '/bytes per session/ { for (i = 1; i < NF; i++) if ($(i + 1) == "bytes") print $i }' "$raw")
  printf '%s\tsessions-1m\tgatehouse\t0\t0\t0\t0\t%s\t0\t%s\t0\t%s\t0\t0\n' "$1" "$SESSIONS" "${per:-0}" \
    "${total:-0}" >>"$RESULTS/results.tsv"
  log "sessions-1m   gatehouse round $1: $(tail -1 "$raw")"
}

versions() {
  {
    echo "date: $(date -Is)"
    echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "gatehouse: $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?')"
    echo "nginx: $(nginx -v 2>&1)"
    echo "haproxy: $(haproxy -v | head -1)"
    echo "wrk: $(wrk -v 2>&1 | head -1)"
    echo "h2load: $(h2load --version)"
    echo "redis: $(redis-server --version)"
    echo "rustc: $(rustc --version)"
    echo "settings: REPEAT=$REPEAT DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS BIG_CONNS=$BIG_CONNS" \
         "H2=${H2_CONNS}x$H2_STREAMS IDLE_CONNS=$IDLE_CONNS SESSIONS=$SESSIONS PROXY_CPU=$PROXY_CPU LOAD_CPU=$LOAD_CPU"
  } | tee "$RESULTS/versions.txt"
}

main() {
  if [[ ${1:-} == list ]]; then echo "$ALL"; exit 0; fi
  local scenarios=("$@") s
  ((${#scenarios[@]})) || read -ra scenarios <<<"$ALL"
  for s in "${scenarios[@]}"; do describe "$s" || die "unknown scenario $s (try: bench/run.sh list)"; done
  mkdir -p "$RUN" "$RESULTS/raw"
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  install_missing
  build
  reap_stale
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  make_certs
  versions >&2
  printf '%s\n' "$TSV_HEAD" >"$RESULTS/results.tsv"
  start_backends
  local r p list
  for r in $(seq "$REPEAT"); do
    for s in "${scenarios[@]}"; do
      describe "$s"
      if [[ $CLIENT == sessions ]]; then run_sessions "$r"; continue; fi
      list=$PROXIES
      # Odd rounds gatehouse first, even rounds last: drift hits both sides.
      ((r % 2 == 0)) && list=$(tr ' ' '\n' <<<"$list" | tac | tr '\n' ' ')
      for p in $list; do run_one "$s" "$p" "$r"; done
    done
  done
  echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS/versions.txt" >&2
  echo
  python3 "$BENCH/summary.py" "$RESULTS" | tee "$RESULTS/summary.txt"
  echo "results: $RESULTS"
  ((CHECKS_FAILED == 0)) || { echo "WARNING: some functional checks failed (see $RESULTS/checks.txt)"; exit 1; }
}

main "$@"
