#!/usr/bin/env bash
# Instructions per request of gatehouse's in-line path, counted by
# callgrind: unlike time, the count does not move with what else the
# machine is doing, so two builds can be compared on a busy machine (the
# CPU-time figures of bench/run.sh need a quiet one).
#
#   bench/instructions.sh [GATEHOUSE_BINARY [BACKEND_BINARY]]
#
# Defaults: target/release/gatehouse and target/release/examples/bench-backend
# (`cargo build --release --bin gatehouse --example bench-backend`). Needs
# valgrind, h2load (nghttp2-client) and python3. For each scenario it counts
# the whole process for N1 and N2 keep-alive requests on one HTTP/1.1
# connection and prints (Ir(N2) - Ir(N1)) / (N2 - N1): start-up and
# shutdown cancel out. Scenarios: plain (no auth), jwt-hs256 (a Bearer JWT,
# verified once then served from the token cache), session (the cookie of
# a login, memory store), sticky (the signed affinity cookie on every
# request). SCENARIOS="plain sticky" picks some; needs curl too.
set -euo pipefail
cd "$(dirname "$0")/.."
gh="${1:-target/release/gatehouse}"
backend="${2:-target/release/examples/bench-backend}"
N1="${N1:-2000}"
N2="${N2:-6000}"
for tool in valgrind h2load python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
b1=$(free_port); gport=$(free_port); aport=$(free_port)
"$backend" "127.0.0.1:$b1=b1" >/dev/null 2>&1 &
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/secret"
printf 'bench-instructions-hs256-secret-0123456789' > "$work/hs256"
cat > "$work/gatehouse.toml" <<EOF
[server]
listen = "127.0.0.1:$gport"
secret_file = "$work/secret"
worker_threads = 1
[admin]
listen = "127.0.0.1:$aport"
[log]
access_log = false
[[jwt]]
name = "bench-hs256"
issuer = "bench-hs256"
algorithms = ["HS256"]
secret_file = "$work/hs256"
required_claims = ["sub", "exp"]
[identity]
headers = { "X-Auth-User" = "sub" }
[sessions]
store = "memory"
cookie_name = "gatehouse_session"
cookie_secure = false
[login]
users_file = "$work/users.toml"
[[upstreams]]
name = "pool"
backends = ["127.0.0.1:$b1"]
[[upstreams]]
name = "sticky"
backends = ["127.0.0.1:$b1"]
  [upstreams.sticky]
  mode = "cookie"
  cookie_name = "gatehouse_affinity"
[[routes]]
name = "jwt"
path_prefix = "/jwt/"
upstream = "pool"
auth = "required"
methods = ["jwt"]
[[routes]]
name = "session"
path_prefix = "/session/"
upstream = "pool"
auth = "required"
methods = ["session"]
on_unauthenticated = "401"
[[routes]]
name = "sticky"
path_prefix = "/sticky/"
upstream = "sticky"
auth = "none"
[[routes]]
name = "plain"
path_prefix = "/"
upstream = "pool"
auth = "none"
EOF
token="$(python3 bench/mkjwt.py HS256 "$work/hs256" bench-user 3600)"
password="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '[[users]]\nusername = "bench-user"\npassword_hash = "%s"\n' \
  "$(printf '%s' "$password" | "$gh" hash-password)" > "$work/users.toml"

# count <n> <path> [header]: instructions of a whole run serving n requests.
count() {
  local n="$1" path="$2" header="${3:-}" out="$work/cg.out"
  rm -f "$out"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$gh" --config "$work/gatehouse.toml" run \
    >/dev/null 2>"$work/vg.log" &
  local pid=$!
  for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$aport/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  if [ "$header" = session ]; then
    # A signed-in client holds its session cookie: one login first (in
    # both runs, so it cancels out).
    header="Cookie: $(curl -fsS -D - -o /dev/null -H 'Content-Type: application/json' \
      -d "{\"username\":\"bench-user\",\"password\":\"$password\"}" \
      "http://127.0.0.1:$gport/.gatehouse/login" \
      | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p' | head -1)"
  fi
  if [ "$header" = sticky ]; then
    # A sticky client holds its affinity cookie: take one first (one more
    # request in both runs, so it cancels out).
    header="Cookie: $(curl -fsS -D - -o /dev/null "http://127.0.0.1:$gport$path" \
      | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p' | head -1)"
  fi
  local args=(--h1 -n "$n" -c 1 -m 1)
  [ -n "$header" ] && args+=(-H "$header")
  h2load "${args[@]}" "http://127.0.0.1:$gport$path" > "$work/h2load.log"
  if ! grep -q "succeeded, 0 failed" "$work/h2load.log"; then
    { grep "requests:" "$work/h2load.log"; tail -5 "$work/vg.log"; } >&2
    kill -TERM "$pid"; wait "$pid" || true
    echo "FAILED"
    return
  fi
  kill -TERM "$pid"; wait "$pid" || true
  awk '/^summary:/ {print $2}' "$out"
}

printf 'build: %s\n' "$("$gh" version 2>/dev/null || echo "$gh")"
for scenario in ${SCENARIOS:-plain jwt-hs256 session sticky}; do
  case "$scenario" in
    plain) path=/ ; header= ;;
    jwt-hs256) path=/jwt/x ; header="Authorization: Bearer $token" ;;
    session) path=/session/x ; header=session ;;
    sticky) path=/sticky/x ; header=sticky ;;
  esac
  a=$(count "$N1" "$path" "$header"); [ "$a" = FAILED ] && a=$(count "$N1" "$path" "$header")
  b=$(count "$N2" "$path" "$header"); [ "$b" = FAILED ] && b=$(count "$N2" "$path" "$header")
  echo "$scenario: $(( (b - a) / (N2 - N1) )) instructions/request (Ir $a for $N1, $b for $N2)"
done
