#!/usr/bin/env bash
# Revocation latency between two gateway replicas on Redis (standalone,
# Sentinel, Cluster) and the Sentinel failover gap, as docs/scale-out.md
# reports them. Needs redis-server, redis-cli and redis-sentinel (the
# tests start their own servers on loopback). Trials per kind and form:
# GATEHOUSE_TRIALS (default 200).
#
#   bench/revocation-latency.sh [results file]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench/results/revocation-latency-$(date -u +%Y-%m-%d).txt}"
mkdir -p "$(dirname "$out")"
export GATEHOUSE_REQUIRE_REDIS=1
cargo test --release --test it -- --ignored --nocapture --test-threads 1 \
  redis_ha::latency 2>&1 | tee "$out.log" | grep -oE '(LATENCY|FAILOVER) .*' | tee "$out"
echo "raw log: $out.log"
