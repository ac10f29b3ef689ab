#!/usr/bin/env python3
"""Summary of a bench/run.sh run: python3 bench/summary.py <results dir>.

Reads results.tsv (one row per scenario, proxy and round) and prints:
  1. per scenario and proxy: medians over the rounds of req/s, p50, p99,
     proxy CPU per request and RSS; spread = (max - min) / median of req/s;
     on peer rows, gatehouse/peer ratios: the median of the per-round ratios
     (gatehouse's round r against the peer's round r) and their range;
  2. idle connections: RSS before and while holding them, per connection;
  3. the in-memory session store with many sessions;
  4. the issue's targets, each met or not, with the figures used.
"""
import csv
import statistics
import sys
from collections import defaultdict

MB = 1e6  # targets are in MB (10^6 bytes)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def load(path):
    rows = defaultdict(dict)  # (scenario, proxy) -> round -> row
    order = []
    with open(path) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            key = (r["scenario"], r["proxy"])
            if key not in order:
                order.append(key)
            for k in r:
                if k not in ("scenario", "proxy"):
                    r[k] = float(r[k]) if r[k] not in ("", "-") else None
            rows[key][int(r["round"])] = r
    return rows, order


def col(rows, key, c):
    return [r[c] for r in rows.get(key, {}).values()]


def ratios(rows, a, b, c, invert=False):
    """Per-round a/b of column c (rounds both have)."""
    ra, rb = rows.get(a, {}), rows.get(b, {})
    out = []
    for rnd in sorted(set(ra) & set(rb)):
        x, y = ra[rnd][c], rb[rnd][c]
        if x and y:
            out.append(y / x if invert else x / y)
    return out


def fmt_ratio(rs):
    if not rs:
        return "-"
    return f"{med(rs):.2f} ({min(rs):.2f}-{max(rs):.2f})"


def main():
    d = sys.argv[1]
    rows, order = load(f"{d}/results.tsv")
    scenarios = []
    for s, _ in order:
        if s not in scenarios:
            scenarios.append(s)
    traffic = [s for s in scenarios if s not in ("idle10k", "sessions-1m")]

    print("Throughput and cost (medians over rounds; ratios = gatehouse/peer per round: median (min-max))")
    hdr = f"{'scenario':<14}{'proxy':<10}{'req/s':>8}{'spread':>7}{'p50 ms':>8}{'p99 ms':>8}{'CPU us/req':>11}{'RSS MiB':>8}   {'req/s ratio':<18}{'CPU/req ratio':<18}{'p99 ratio':<18}"
    print(hdr)
    print("-" * len(hdr))
    for s in traffic:
        proxies = [p for (x, p) in order if x == s]
        for p in proxies:
            k = (s, p)
            rps = col(rows, k, "rps")
            m = med(rps)
            spread = 100 * (max(rps) - min(rps)) / m if m else 0
            line = (
                f"{s:<14}{p:<10}{m:>8.0f}{spread:>6.1f}%{med(col(rows, k, 'p50_us')) / 1000:>8.2f}"
                f"{med(col(rows, k, 'p99_us')) / 1000:>8.2f}{med(col(rows, k, 'us_per_req')):>11.1f}"
                f"{med(col(rows, k, 'rss_end_kib')) / 1024:>8.1f}"
            )
            if p != "gatehouse":
                g = (s, "gatehouse")
                line += (
                    f"   {fmt_ratio(ratios(rows, g, k, 'rps')):<18}"
                    f"{fmt_ratio(ratios(rows, g, k, 'us_per_req')):<18}"
                    f"{fmt_ratio(ratios(rows, g, k, 'p99_us')):<18}"
                )
            print(line)
    busy = [r["busy_before"] for v in rows.values() for r in v.values() if r["busy_before"] is not None]
    if busy:
        print(f"(machine busy just before a measurement: median {med(busy):.0f} %, worst {max(busy):.0f} %)")

    if any(s == "idle10k" for s, _ in order):
        print()
        print("Idle keep-alive TLS connections (one request each, then held idle)")
        print(f"{'proxy':<10}{'conns':>7}{'RSS idle MiB':>14}{'RSS held MiB':>14}{'KiB/conn':>10}{'CPU us/conn':>12}")
        for s, p in order:
            if s != "idle10k":
                continue
            k = (s, p)
            n = med(col(rows, k, "requests"))
            r0 = med(col(rows, k, "rss_start_kib"))
            r1 = med(col(rows, k, "rss_end_kib"))
            per = med([(r["rss_end_kib"] - r["rss_start_kib"]) / r["requests"]
                       for r in rows[k].values() if r["requests"]])
            print(f"{p:<10}{n:>7.0f}{r0 / 1024:>14.1f}{r1 / 1024:>14.1f}{per or 0:>10.1f}"
                  f"{med(col(rows, k, 'us_per_req')):>12.0f}")

    k = ("sessions-1m", "gatehouse")
    if k in rows:
        print()
        n = med(col(rows, k, "requests"))
        total = med(col(rows, k, "rss_end_kib"))
        per = med(col(rows, k, "us_per_req"))
        print(f"In-memory sessions: {n:.0f} sessions, process RSS {total * 1024 / MB:.0f} MB "
              f"({total / 1024:.0f} MiB), {per:.0f} bytes per session")

    # ---- targets ------------------------------------------------------------------
    print()
    print("Targets (this run)")
    G = "gatehouse"

    def m(s, p, c):
        return med(col(rows, (s, p), c))

    def verdict(name, ok, detail):
        if ok is None:
            print(f"  n/a   {name}: {detail}")
        else:
            print(f"  {'MET ' if ok else 'MISS'}  {name}: {detail}")

    def best_peer(s, c, lower_is_better=True):
        peers = [p for (x, p) in order if x == s and p != G]
        vals = [(m(s, p, c), p) for p in peers if m(s, p, c)]
        if not vals:
            return None, None
        return (min if lower_is_better else max)(vals)

    if ("tls", G) in rows:
        bc, bp = best_peer("tls", "us_per_req")
        gc = m("tls", G, "us_per_req")
        if bc:
            verdict("TLS keep-alive CPU/request <= 0.9x the better of nginx/HAProxy",
                    gc <= 0.9 * bc, f"gatehouse {gc:.1f} us vs {bp} {bc:.1f} us = {gc / bc:.2f}x "
                    f"(per round {fmt_ratio(ratios(rows, ('tls', G), ('tls', bp), 'us_per_req'))})")
            br, brp = best_peer("tls", "rps", lower_is_better=False)
            gr = m("tls", G, "rps")
            verdict("TLS keep-alive req/s >= 1.1x", gr >= 1.1 * br,
                    f"gatehouse {gr:.0f} vs {brp} {br:.0f} = {gr / br:.2f}x")
            b99, b99p = best_peer("tls", "p99_us")
            g99 = m("tls", G, "p99_us")
            verdict("TLS keep-alive p99 no worse", g99 <= b99,
                    f"gatehouse {g99 / 1000:.2f} ms vs {b99p} {b99 / 1000:.2f} ms")
    if ("jwt-es256", G) in rows:
        gc = m("jwt-es256", G, "us_per_req")
        hc = m("jwt-es256", "haproxy", "us_per_req")
        if hc:
            verdict("JWT ES256 CPU/request <= 0.25x HAProxy jwt_verify", gc <= 0.25 * hc,
                    f"{gc:.1f} vs {hc:.1f} us = {gc / hc:.2f}x")
        pc = m("plain", G, "us_per_req")
        if pc:
            verdict("JWT ES256 CPU/request <= 1.05x gatehouse without auth (plain HTTP, same transport)",
                    gc <= 1.05 * pc, f"{gc:.1f} vs {pc:.1f} us = {gc / pc:.2f}x")
        tc = m("tls", G, "us_per_req")
        if tc:
            verdict("JWT ES256 (plain HTTP) CPU/request <= 1.05x gatehouse plain TLS",
                    gc <= 1.05 * tc, f"{gc:.1f} vs {tc:.1f} us = {gc / tc:.2f}x")
    for s, want in (("session-mem", 0.95), ("session-redis", 0.9)):
        if (s, G) in rows and ("plain", G) in rows:
            r = m(s, G, "rps") / m("plain", G, "rps")
            c = m("plain", G, "us_per_req") / m(s, G, "us_per_req")
            verdict(f"{s} req/s >= {want}x gatehouse plain", r >= want,
                    f"{m(s, G, 'rps'):.0f} vs {m('plain', G, 'rps'):.0f} = {r:.2f}x "
                    f"(by CPU/request: {c:.2f}x)")
    if ("sticky", G) in rows and ("sticky", "haproxy") in rows:
        r = m("sticky", G, "rps") / m("sticky", "haproxy", "rps")
        verdict("sticky cookie req/s >= 1.1x HAProxy cookie insert", r >= 1.1,
                f"{r:.2f}x (per round {fmt_ratio(ratios(rows, ('sticky', G), ('sticky', 'haproxy'), 'rps'))}; "
                f"CPU/request {fmt_ratio(ratios(rows, ('sticky', G), ('sticky', 'haproxy'), 'us_per_req'))})")
    if ("sessions-1m", G) in rows:
        n = m("sessions-1m", G, "requests")
        total = m("sessions-1m", G, "rss_end_kib") * 1024
        verdict(f"{n:.0f} in-memory sessions <= 300 MB RSS", total <= 300 * MB if n >= 1e6 else None,
                f"{total / MB:.0f} MB")
    if ("plain", G) in rows:
        idle = m("plain", G, "rss_start_kib") * 1024
        verdict("idle process <= 20 MB RSS", idle <= 20 * MB,
                f"{idle / MB:.1f} MB (plain config, started, before load)")
    if ("idle10k", G) in rows:
        n = m("idle10k", G, "requests")
        held = m("idle10k", G, "rss_end_kib") * 1024
        verdict(f"10,000 idle TLS connections <= 150 MB RSS", held <= 150 * MB if n >= 10000 else None,
                f"{held / MB:.0f} MB with {n:.0f} connections held")


if __name__ == "__main__":
    main()
