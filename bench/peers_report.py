#!/usr/bin/env python3
"""Report of bench/run.sh: reads the raw outputs (wrk texts, curl/probe JSON, VmHWM lists) of
every peer and of the steps (controller, tunnels, coldwarm) and writes peers.json, peers.md, and
peers-latency.{dat,gp} for gnuplot.

    peers_report.py RAW_DIR RESULTS_DIR PEER...
    peers_report.py --self-test      parse a canned run (used by bench/run.sh --dry-run)
"""
import json
import os
import re
import sys
import tempfile

UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
CONNS = (1, 64, 256)


def to_us(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def parse_wrk(text):
    out = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m:
        err = text.strip().splitlines()[-1:] or ["no output"]
        return {"error": err[0][:200]}
    out["rps"] = float(m.group(1))
    for pct in ("50", "90", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % pct, text, re.M)
        out["p%s_us" % pct] = to_us(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in ([\d.]+\w+)", text)
    out["requests"] = int(m.group(1)) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    out["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx"] = int(m.group(1)) if m else 0
    return out


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def read_json(path, errpath):
    text = read(path)
    try:
        return json.loads(text) if text else {"error": (read(errpath) or "no output").strip()[:300]}
    except ValueError:
        return {"error": ("bad output: " + text[:200] + " " + (read(errpath) or "")).strip()}


def transfer(raw, name, expect):
    d = read_json(os.path.join(raw, name + ".json"), os.path.join(raw, name + ".err"))
    if "error" not in d and str(d.get("code")) == "200" and 0 < d.get("bytes", 0) < expect:
        d["partial"] = True
    if "error" not in d and (str(d.get("code")) != "200" or d.get("bytes", 0) == 0):
        err = (read(os.path.join(raw, name + ".err")) or "").strip()
        d["error"] = "HTTP %s after %s B %s" % (d.get("code"), d.get("bytes"), err)
    return d


def read_limits(raw):
    out = {}
    for line in (read(os.path.join(raw, "limits")) or "").splitlines():
        if " " in line:
            k, v = line.split(" ", 1)
            out[k] = v.strip()
    return out


def collect(raw_dir, peers, expect):
    res = {}
    for peer in peers:
        raw = os.path.join(raw_dir, peer)
        p = {"status": "ok"}
        failed = read(os.path.join(raw, "failed"))
        if failed is not None:
            p = {"status": "not measured", "reason": failed.strip()}
        elif not os.path.isdir(raw) or not os.path.exists(os.path.join(raw, "wrk-1.txt")):
            p = {"status": "not measured", "reason": "not run (--only)"}
            res[peer] = p
            continue
        else:
            p["wrk"] = {}
            for c in CONNS:
                p["wrk"][str(c)] = parse_wrk(read(os.path.join(raw, "wrk-%d.txt" % c)) or "")
            p["limits"] = read_limits(raw)
            up = read(os.path.join(raw, "upload_bytes"))
            p["upload_bytes"] = int(up) if up and up.strip().isdigit() else expect
            p["download"] = transfer(raw, "download", expect)
            p["upload"] = transfer(raw, "upload", p["upload_bytes"])
            p["sse"] = read_json(os.path.join(raw, "sse.json"), os.path.join(raw, "sse.err"))
            if "ws" in p["limits"]:
                p["ws"] = {"error": "not applicable", "limitation": p["limits"]["ws"]}
            else:
                p["ws"] = read_json(os.path.join(raw, "ws.json"), os.path.join(raw, "ws.err"))
            died = read(os.path.join(raw, "died"))
            if died:
                p["died"] = [dict(zip(("process", "during"), l.split(" ", 1)))
                             for l in died.splitlines() if l.strip()]
            fr = read(os.path.join(raw, "first_request_us"))
            if fr:
                p["first_request_us"] = int(fr)
        for name, key in (("rss", "peak_rss_kb"), ("rss-row", "peak_rss_kb_row")):
            rss = read(os.path.join(raw, name))
            if rss:
                p[key] = {}
                for line in rss.splitlines():
                    parts = line.split()
                    if len(parts) == 3:
                        p[key][parts[0]] = int(parts[2]) if parts[2].isdigit() else None
        errs = (read(os.path.join(raw, "log-errors")) or "").strip()
        if errs:
            p["log_errors"] = errs.splitlines()
        res[peer] = p
    origin = read(os.path.join(raw_dir, "origin", "rss")) or ""
    return res, {l.split()[0]: int(l.split()[2]) for l in origin.splitlines()
                 if len(l.split()) == 3 and l.split()[2].isdigit()}


def collect_tunnels(raw_dir):
    raw = os.path.join(raw_dir, "tunnels")
    count = read(os.path.join(raw, "count"))
    if count is None:
        return None
    t = {"count": int(count)}
    failed = read(os.path.join(raw, "failed"))
    if failed is not None:
        t["error"] = failed.strip()
        return t
    red = read_json(os.path.join(raw, "redis.json"), os.path.join(raw, "redis.err"))
    if "error" not in red:
        t["redis_bytes_per_route"] = round(
            (red["redis_used_memory_after"] - red["redis_used_memory_before"]) / t["count"])
    rss = {}
    for line in (read(os.path.join(raw, "rss")) or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            rss[parts[0]] = int(parts[1])
    t["gateway_rss_kb"] = rss
    if rss.get("before") and rss.get("pass1"):
        t["gateway_bytes_per_tunnel"] = round((rss["pass1"] - rss["before"]) * 1024 / t["count"])
    t["visit_pass"] = parse_pass(read(os.path.join(raw, "pass1.txt")) or "",
                                 read(os.path.join(raw, "pass1.wall_us")))
    for k in ("hot-before", "hot-after"):
        t[k.replace("-", "_")] = parse_wrk(read(os.path.join(raw, k + ".txt")) or "")
    gb = read(os.path.join(raw, "gateway-lookup.json"))
    try:
        t["gw_bench"] = json.loads(gb) if gb else {
            "error": (read(os.path.join(raw, "gw-bench.err")) or "not run").strip()[:200]}
    except ValueError:
        t["gw_bench"] = {"error": "bad output"}
    return t


def collect_controller(raw_dir):
    raw = os.path.join(raw_dir, "controller")
    if not os.path.isdir(raw):
        return None
    failed = read(os.path.join(raw, "failed"))
    if failed is not None:
        return {"error": failed.strip()}
    c = read_json(os.path.join(raw, "controller.json"), os.path.join(raw, "log"))
    if "error" not in c and c.get("sessions"):
        c["bytes_per_session"] = round(
            (c["rss_kb_after_passes"] - c["rss_kb_idle"]) * 1024 / c["sessions"])
    return c


def pctl(xs, q):
    """Nearest-rank percentile of a sorted list."""
    return xs[min(len(xs) - 1, max(0, int(q * len(xs) + 0.999) - 1))] if xs else None


def collect_coldwarm(raw_dir):
    raw = os.path.join(raw_dir, "coldwarm")
    if not os.path.isdir(raw):
        return None
    failed = read(os.path.join(raw, "failed"))
    if failed is not None:
        return {"error": failed.strip()}
    samples = read_json(os.path.join(raw, "coldwarm.json"), os.path.join(raw, "coldwarm.err"))
    if "error" in samples:
        return {"error": "peers_probe.js coldwarm: " + samples["error"]}
    cw = {"errors": samples.get("errors", [])}
    for case in ("warm", "warm_new", "recent", "cold", "direct_warm", "direct_new"):
        times = sorted(samples.get(case, []))
        cw[case] = {"n": len(times), "failed": sum(e.startswith(case + ":") for e in cw["errors"]),
                    "p50_us": pctl(times, 0.5), "p90_us": pctl(times, 0.9),
                    "max_us": times[-1] if times else None}
    cw["recent_to_warm_p50"] = ratio(cw["recent"]["p50_us"], cw["warm"]["p50_us"])
    # like for like: both a visitor's new connection, one to a tunnel that served traffic a
    # moment ago (its streams warm), one to a tunnel that served traffic in the recent past
    cw["recent_to_warm_new_p50"] = ratio(cw["recent"]["p50_us"], cw["warm_new"]["p50_us"])
    cw["cold_to_warm_p50"] = ratio(cw["cold"]["p50_us"], cw["warm"]["p50_us"])
    dn, dw = cw["direct_new"]["p50_us"], cw["direct_warm"]["p50_us"]
    cw["new_connection_us"] = dn - dw if dn is not None and dw is not None else None
    m = {}
    for line in (read(os.path.join(raw, "metrics.txt")) or "").splitlines():
        mm = re.match(r'azhexgate_gateway_(\w+)(?:\{result="(\w+)"\})?\s+([\d.]+)', line)
        if mm:
            m[mm.group(1) + ("_" + mm.group(2) if mm.group(2) else "")] = float(mm.group(3))
    cw["gateway_counters"] = m
    return cw


def parse_pass(text, wall):
    codes, times = {}, []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            codes[parts[0]] = codes.get(parts[0], 0) + 1
            times.append(float(parts[1]) * 1e6)
    if not times or not wall:
        return {"error": "no transfers: " + text[:100]}
    times.sort()
    n = len(times)
    return {"requests": n, "codes": codes, "wall_us": int(wall), "rps": n / (int(wall) / 1e6),
            "p50_us": pctl(times, 0.5), "p90_us": pctl(times, 0.9), "p99_us": pctl(times, 0.99),
            "socket_errors": 0, "non_2xx": n - codes.get("200", 0)}


def tunnels_md(t):
    if t is None:
        return []
    out = ["", "## %d registered tunnels" % t["count"], ""]
    if "error" in t:
        return out + ["Not measured: " + t["error"], ""]
    out.append("%d routes written into Redis (docs/state.md records, their Hybrid Connections absent), "
               "then one visit to each through the azhexgate row's gateway (curl --parallel, 8 "
               "connections: Redis lookup, route cached, the relay's 404 for a stream, 502). The "
               "hot tunnel is that row's static tunnel, measured with wrk -c1 right before the "
               "routes and right after the visits; bench/gw-bench does the same comparison in one "
               "process (2,000 sequential connections, 10,000 cached routes)." % t["count"])
    out += ["", "| figure | value |", "|---|---|"]
    if "redis_bytes_per_route" in t:
        out.append("| Redis memory per route record | %d B |" % t["redis_bytes_per_route"])
    if "gateway_bytes_per_tunnel" in t:
        out.append("| gateway RSS growth per tunnel (route cached, no stream) | %d B |"
                   % t["gateway_bytes_per_tunnel"])
    v = t.get("visit_pass", {})
    if "error" in v:
        out.append("| visits | error: %s |" % v["error"][:100])
    else:
        out.append("| visits (first lookup of each tunnel): req/s, p50 / p99; status codes | "
                   "%.0f, %s / %s; %s |" % (v["rps"], fus(v["p50_us"]), fus(v["p99_us"]), ", ".join(
                       "%s × %d" % kv for kv in sorted(v.get("codes", {}).items()))))
    if t.get("gateway_peak_kb"):
        out.append("| gateway peak RSS (VmHWM) at the end of the run, with these tunnels | %.1f MiB |"
                   % (t["gateway_peak_kb"] / 1024))
    hb, ha = t.get("hot_before", {}), t.get("hot_after", {})
    if "error" not in hb and "error" not in ha:
        out.append("| hot tunnel p50 / p99, 2 tunnels → %d more (real gateway, wrk -c1) | "
                   "%s / %s → %s / %s (p50 ×%.2f) |" % (
                       t["count"], fus(hb["p50_us"]), fus(hb["p99_us"]), fus(ha["p50_us"]),
                       fus(ha["p99_us"]), ratio(ha["p50_us"], hb["p50_us"]) or 0))
    else:
        out.append("| hot tunnel, real gateway | error: %s |" % (hb.get("error") or ha.get("error")))
    g = t.get("gw_bench", {})
    if "error" in g:
        out.append("| hot tunnel, bench/gw-bench | error: %s |" % g["error"])
    else:
        out.append("| hot tunnel p50 / p99, 1 tunnel → %d more (bench/gw-bench, new connection "
                   "per request) | %.3f / %.3f ms → %.3f / %.3f ms (p50 ×%.2f) |" % (
                       g["routes"], g["p50_1_ms"], g["p99_1_ms"], g["p50_many_ms"],
                       g["p99_many_ms"], ratio(g["p50_many_ms"], g["p50_1_ms"]) or 0))
    out.append("")
    return out


def controller_md(c):
    if c is None:
        return []
    out = ["", "## Controller (bench/ctl-bench)", ""]
    if "error" in c:
        return out + ["Not measured: " + c["error"], ""]
    out += ["`POST /api/tunnels` with every ARM call delayed %d ms (emulator), then %d live sessions "
            "(records in Redis, Hybrid Connections in ARM) and the controller's RSS before and after "
            "its reconcile passes. The azhexgate rows above do not use the controller: their routes "
            "are written into Redis as the controller writes them (docs/state.md)."
            % (c["arm_latency_ms"], c["sessions"]), "",
            "| figure | value |", "|---|---|",
            "| tunnel creation, warm pool: p50 / p90 / max (%d) | %.2f / %.2f / %.2f ms |" % (
                c["post_samples"], c["post_warm_pool_ms"]["p50"], c["post_warm_pool_ms"]["p90"],
                c["post_warm_pool_ms"]["max"]),
            "| tunnel creation, cold (no pool, ARM PUT): p50 (%d) | %.2f ms |" % (
                c["post_no_pool_ms"]["samples"], c["post_no_pool_ms"]["p50"]),
            "| controller RSS idle → with %d sessions (HWM) | %.1f → %.1f MiB (%.1f) |" % (
                c["sessions"], c["rss_kb_idle"] / 1024, c["rss_kb_after_passes"] / 1024,
                c["rss_kb_hwm"] / 1024),
            "| controller memory per session | %d B |" % c.get("bytes_per_session", 0),
            "| reconcile pass over %d sessions (mean) | %.1f ms |" % (
                c["sessions"], c["reconcile_pass_ms_avg"]), ""]
    return out


def coldwarm_md(cw):
    if cw is None:
        return []
    out = ["", "## First request to a tunnel, live profile (issue 5)", ""]
    if "error" in cw:
        return out + ["Not measured: " + cw["error"], ""]
    out += ["A gateway of its own on the azhexgate-live row's emulator (live-service latency "
            "profile), its pool idle timeout and pre-dial window scaled from 60 s to 1 s. Rounds "
            "of: 3 s idle, **cold** = a new visitor connection (pool empty: a rendezvous); 0.3 s "
            "later **recently active** = a new visitor connection to a tunnel that just served "
            "traffic; 0.3 s later **warm** = a request on a kept-alive visitor connection; 0.3 s "
            "later **warm, new connection** = a new visitor connection to the now hot tunnel; "
            "then a new and a kept-alive connection to the static origin directly (baseline: "
            "what a new TCP connection costs without a tunnel). Every request follows a pause of at least "
            "0.3 s; times from Node's http client (bench/peers_probe.js coldwarm), 1 KiB body.",
            "",
            "| case | samples | p50 | p90 | max | p50 / warm p50 |", "|---|---|---|---|---|---|"]
    for case, label in (("warm", "warm stream"), ("warm_new", "warm stream, new connection"),
                        ("recent", "recently active, new connection"),
                        ("cold", "cold (idle > pool idle timeout)"),
                        ("direct_warm", "baseline: origin, kept-alive connection"),
                        ("direct_new", "baseline: origin, new connection")):
        c = cw.get(case, {"n": 0, "failed": 0, "p50_us": None, "p90_us": None, "max_us": None})
        r = ratio(c["p50_us"], cw["warm"]["p50_us"])
        out.append("| %s | %d%s | %s | %s | %s | %s |" % (
            label, c["n"], " (%d failed)" % c["failed"] if c["failed"] else "", fus(c["p50_us"]),
            fus(c["p90_us"]), fus(c["max_us"]), "×%.2f" % r if r is not None else "–"))
    m = cw.get("gateway_counters", {})
    if m:
        out += ["", "That gateway's counters at the end: pool hits %d, pool misses (rendezvous "
                "for a request) %d, background pre-dials %d." % (
                    m.get("pool_total_hit", 0), m.get("pool_total_miss", 0),
                    m.get("prewarm_dials_total", 0))]
    if cw.get("errors"):
        out += ["", "Failed requests: " + "; ".join(cw["errors"][:10]).replace("|", "/")]
    out.append("")
    return out


def row_rss(p):
    """Peak RSS of a row's processes from its own measurements (before the tunnels step)."""
    return p.get("peak_rss_kb_row") or p.get("peak_rss_kb", {})


def failed_figures(p):
    if p.get("status") != "ok":
        return True
    bad = [k for k in ("download", "upload", "sse", "ws") if "error" in p.get(k, {})
           and "limitation" not in p[k]]
    return bool(bad or p.get("died") or any("error" in w for w in p.get("wrk", {}).values()))


def verdict(ok):
    return "–" if ok is None else ("met" if ok else "**missed**")


def cmp_line(label, value, target, ok):
    return "| %s | %s | %s | %s |" % (label, value, target, verdict(ok))


def targets_md(doc):
    """The issue-5 performance targets, each with its ratio and whether it is met."""
    res = doc["peers"]
    ok = lambda k: res.get(k, {}).get("status") == "ok"
    w = lambda k, c: res[k]["wrk"].get(c, {}) if ok(k) else {}
    out = ["", "## Issue-5 targets", "",
           "| target | measured | target | |", "|---|---|---|---|"]
    for az in [k for k in res if k.startswith("azhexgate") and ok(k)]:
        a64 = w(az, "64").get("rps")
        for ref, want in (("ssh", 2.0), ("nginx", 0.5)):
            r = ratio(a64, w(ref, "64").get("rps"))
            out.append(cmp_line("%s req/s @64 vs %s" % (az, ref),
                                "×%.2f (%s vs %s)" % (r, frps(w(az, "64")), frps(w(ref, "64")))
                                if r is not None else "– (%s not measured)" % ref,
                                "≥ ×%.1f" % want, r >= want if r is not None else None))
        d1, a1 = w("direct", "1").get("p50_us"), w(az, "1").get("p50_us")
        if d1 is not None and a1 is not None:
            out.append(cmp_line("%s p50 @1 added over direct" % az, fus(a1 - d1), "≤ 1 ms",
                                a1 - d1 <= 1000))
        for k in ("download", "upload"):
            a, n = res[az][k], res.get("nginx", {}).get(k, {})
            r = (ratio(a.get("Bps"), n.get("Bps")) if ok("nginx") and "error" not in a and
                 "error" not in n and not a.get("partial") and not n.get("partial") else None)
            label = "%s %s %s vs nginx" % (az, size(
                res[az]["upload_bytes"] if k == "upload" else doc["machine"]["transfer_bytes"]), k)
            if r is not None:
                shown = "×%.2f (%s vs %s)" % (r, fbps(a, None), fbps(n, None))
            else:
                shown = "– (%s; nginx: %s)" % (fbps(a, None), fbps(n, None) if ok("nginx")
                                                else "not measured")
            out.append(cmp_line(label, shown.replace("|", "/"), "≥ ×0.5",
                                r >= 0.5 if r is not None else None))
        ours = {k: v for k, v in row_rss(res[az]).items()
                if k in ("gateway", "client-s", "client-a")}
        if ours and all(v is not None for v in ours.values()):
            out.append(cmp_line("%s peak RSS of each of our processes" % az, ", ".join(
                "%s %.1f MiB" % (k, v / 1024) for k, v in ours.items()), "≤ 32 MB",
                max(ours.values()) * 1024 <= 32e6))
    t = doc.get("tunnels") or {}
    hb, ha = t.get("hot_before", {}), t.get("hot_after", {})
    if hb.get("p50_us") and ha.get("p50_us"):
        r = ratio(ha["p50_us"], hb["p50_us"])
        out.append(cmp_line("hot tunnel p50 with %d tunnels vs 2 (real gateway)" % t["count"],
                            "×%.2f (%s vs %s)" % (r, fus(ha["p50_us"]), fus(hb["p50_us"])),
                            "the same (×1.0 within noise)", r <= 1.2))
    g = t.get("gw_bench", {})
    if "p50_1_ms" in g:
        r = ratio(g["p50_many_ms"], g["p50_1_ms"])
        out.append(cmp_line("hot tunnel p50 with %d tunnels vs 1 (gw-bench)" % g["routes"],
                            "×%.2f" % r, "the same (×1.0 within noise)", r <= 1.2))
    cw = doc.get("coldwarm") or {}
    if cw.get("recent_to_warm_new_p50") is not None:
        r = cw["recent_to_warm_new_p50"]
        out.append(cmp_line("live profile: a visitor's first request (new connection), recently "
                            "active tunnel vs hot tunnel with warm streams (p50)",
                            "×%.2f (%s vs %s; cold %s)" % (
                                r, fus(cw["recent"]["p50_us"]), fus(cw["warm_new"]["p50_us"]),
                                fus(cw["cold"]["p50_us"])), "≤ ×1.2", r <= 1.2))
    if cw.get("recent_to_warm_p50") is not None:
        r = cw["recent_to_warm_p50"]
        out.append("| the same vs a request on a kept-alive visitor connection (adds the visitor's "
                   "TCP connect to one side only) | ×%.2f (%s vs %s) | ≤ ×1.2 | %s |" % (
                       r, fus(cw["recent"]["p50_us"]), fus(cw["warm"]["p50_us"]),
                       verdict(r <= 1.2)))
        nc = cw.get("new_connection_us")
        if nc is not None:
            adj = ratio(cw["recent"]["p50_us"] - nc, cw["warm"]["p50_us"])
            out.append("| the same without what a new TCP connection costs at the bare origin "
                       "(%s: new − kept-alive p50 there) | ×%.2f | ≤ ×1.2 | %s |" % (
                           fus(nc), adj, verdict(adj <= 1.2)))
    out.append("")
    return out


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def add_ratios(res):
    d = res.get("direct", {})
    if d.get("status") != "ok":
        return
    for peer, p in res.items():
        if p.get("status") != "ok":
            continue
        r = {}
        for c in map(str, CONNS):
            w, dw = p["wrk"].get(c, {}), d["wrk"].get(c, {})
            r["rps_%s" % c] = ratio(w.get("rps"), dw.get("rps"))
            r["p50_%s" % c] = ratio(w.get("p50_us"), dw.get("p50_us"))
            r["p99_%s" % c] = ratio(w.get("p99_us"), dw.get("p99_us"))
        for k in ("download", "upload"):
            if p[k].get("partial"):
                continue
            r[k] = ratio(p[k].get("Bps") if "error" not in p[k] else None,
                         d[k].get("Bps") if "error" not in d[k] else None)
        p["ratio_to_direct"] = r


def fus(us):
    if us is None:
        return "–"
    if us >= 1e6:
        return "%.2f s" % (us / 1e6)
    if us >= 1e3:
        return "%.2f ms" % (us / 1e3)
    return "%.0f µs" % us


def frps(w):
    if "error" in w:
        return "error"
    s = "%.0f" % w["rps"] if w["rps"] >= 100 else "%.1f" % w["rps"]
    bad = w.get("socket_errors", 0) + w.get("non_2xx", 0)
    return s + (" (%d err)" % bad if bad else "")


def fx(r):
    return "" if r is None else " (×%.2f)" % r


def fbps(t, r):
    if "error" in t:
        return "failed: " + t["error"][:60].replace("|", "/")
    if t.get("partial"):
        return "%.0f MB/s (stopped by the time limit after %d MiB)" % (t["Bps"] / 1e6,
                                                                     t["bytes"] >> 20)
    return "%.0f MB/s%s" % (t["Bps"] / 1e6, fx(r))


def markdown(doc):
    m, res = doc["machine"], doc["peers"]
    out = ["# AzHexGate and its peers, side by side (%s)" % m["date"], ""]
    out.append("Machine: %s, %d cores, %d MiB, kernel %s. Load average before/after: %s / %s "
               "(1/5/15 min). Everything on 127.0.0.1 on the same cores as the load generator "
               "(wrk -t1, %d s per run%s); compare ratios to direct, not absolute numbers."
               % (m["cpu"], m["cores"], m["mem_kb"] // 1024, m["kernel"], m["load_before"],
                  m["load_after"], m["wrk_seconds"], ", --quick" if m["quick"] else ""))
    out.append("")
    out.append("Origins: nginx `return 200` 1 KiB from memory (req/s, latency); bench/peers-origin "
               "(the client's demo app) for transfers, SSE and WebSocket. Ratios in parentheses are "
               "to direct.")
    out += ["", "## Requests (1 KiB body, keep-alive) and latency", "",
            "| peer | req/s @1 | p50 @1 | p99 @1 | req/s @64 | p50 @64 | p90 @64 | p99 @64 | "
            "req/s @256 | p50 @256 | p99 @256 |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for peer, p in res.items():
        if p["status"] != "ok":
            out.append("| %s | not measured: %s |||||||||| " % (peer, p["reason"].replace("|", "/")[:300]))
            continue
        r = p.get("ratio_to_direct", {})
        cells = [peer]
        for c in map(str, CONNS):
            w = p["wrk"][c]
            if "error" in w:
                cells += ["error: " + w["error"][:60]] + ["–"] * (2 if c != "64" else 3)
                continue
            cells.append(frps(w) + fx(r.get("rps_" + c)))
            cells.append(fus(w["p50_us"]))
            if c == "64":
                cells.append(fus(w["p90_us"]))
            cells.append(fus(w["p99_us"]))
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "## Transfers, streams, memory", "",
            "| peer | %s download | %s upload | SSE stream open p50 | SSE first event p50 "
            "| WS handshake p50 | WS echo RTT p50 / p99 | peak RSS (VmHWM) |"
            % (size(m["transfer_bytes"]), size(m["transfer_bytes"])),
            "|---|---|---|---|---|---|---|---|"]
    for peer, p in res.items():
        rss = ", ".join("%s %s" % (k, "%.1f MiB" % (v / 1024) if v is not None else "died")
                        for k, v in row_rss(p).items())
        if p["status"] != "ok":
            out.append("| %s | not measured |||||| %s |" % (peer, rss))
            continue
        r = p.get("ratio_to_direct", {})
        sse, ws, lim = p["sse"], p["ws"], p.get("limits", {})
        mark = lambda k: " (%s)" % "†‡§"[["upload", "sse", "ws"].index(k)] if k in lim else ""
        sse_o = fus(sse["open_us"]["p50"]) if "error" not in sse else "failed: " + sse["error"][:60]
        sse_f = fus(sse["first_event_us"]["p50"]) if "error" not in sse else "–"
        if "limitation" in ws:
            ws_h, ws_r = "n/a" + mark("ws"), "n/a"
        else:
            ws_h = fus(ws["handshake_us"]) if "error" not in ws else "failed: " + ws["error"][:60]
            ws_r = ("%s / %s" % (fus(ws["rtt_us"]["p50"]), fus(ws["rtt_us"]["p99"]))
                    if "error" not in ws else "–")
        up = fbps(p["upload"], r.get("upload") if "upload" not in lim else None)
        if p.get("upload_bytes") != m["transfer_bytes"] and "error" not in p["upload"]:
            up += " with %s" % size(p["upload_bytes"])
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            peer, fbps(p["download"], r.get("download")), up + mark("upload"),
            sse_o + mark("sse"), sse_f + mark("sse"), ws_h, ws_r, rss))
    lims = {}
    for peer, p in res.items():
        for k, v in p.get("limits", {}).items():
            lims.setdefault((k, v), []).append(peer)
    if lims:
        out.append("")
        out.append("Limitations, not failures of the harness or the emulator (docs/benchmarks.md "
                   "cites the sources): " + "; ".join(
                       "(%s) %s: %s" % ("†‡§"[["upload", "sse", "ws"].index(k)] if k in
                                        ("upload", "sse", "ws") else k, ", ".join(peers), v)
                       for (k, v), peers in sorted(lims.items())) + ".")
    if doc.get("origin_peak_rss_kb"):
        out.append("")
        out.append("Origins' peak RSS (shared by every peer): " + ", ".join(
            "%s %.1f MiB" % (k, v / 1024) for k, v in doc["origin_peak_rss_kb"].items()))
    deaths = ["%s: %s died during %s" % (k, d["process"], d.get("during", "?"))
              for k, p in res.items() for d in p.get("died", [])]
    if deaths:
        out += ["", "Processes that died during the run (later figures of that peer fail): "
                + "; ".join(deaths) + "."]
    notes = ["%s: %s" % (k, " / ".join(p["log_errors"])) for k, p in res.items()
             if p.get("log_errors") and failed_figures(p)]
    if notes:
        out += ["", "Last error lines in the logs of the rows with failed figures: " + "; ".join(
            n.replace("|", "/") for n in notes) + "."]
    extra = [(k, p["first_request_us"]) for k, p in res.items() if "first_request_us" in p]
    if extra:
        out += ["", "Time from starting the AzHexGate processes to the first 200 through the "
                "gateway (client connect + first rendezvous): " + ", ".join(
                    "%s %s" % (k, fus(v)) for k, v in extra)]
    out += ["", "Live-service latency profile: the `-live` rows run through the emulator with "
            "`--emulator-latency-profile live` (what a visitor on the internet sees through Azure "
            "Relay). nginx, ssh -R and PageKite have no relay, so they have no live row. The "
            "emulator holds each HTTP-mode request (the hyco rows) for its match-making time plus "
            "two lane hops (~340 ms in the live profile): hyco-https pays that on every request, "
            "AzHexGate only when it dials a new stream (its gateway keeps streams pooled)."]
    out += targets_md(doc)
    out += coldwarm_md(doc.get("coldwarm"))
    out += controller_md(doc.get("controller"))
    out += tunnels_md(doc.get("tunnels"))
    out += ["", "Peak RSS is the sum of VmHWM over each process and its children (nginx workers, "
            "sshd session processes), read at the end of the run; `redis` is shared by the "
            "AzHexGate rows; `emulator` stands in for Azure Relay and is not part of a deployment. "
            "The `azhexgate` row's peaks are read before the registered-tunnels step (whose "
            "gateway peak that section gives).", ""]
    return "\n".join(out)


def size(n):
    return "1 GiB" if n == 1 << 30 else "%d MiB" % (n >> 20)


def plot(doc, results):
    rows = [(k, p) for k, p in doc["peers"].items() if p.get("status") == "ok"]
    if not rows:
        return
    dat = os.path.join(results, "peers-latency.dat")
    with open(dat, "w", encoding="utf-8") as f:
        f.write("# peer " + " ".join("p50_%d p90_%d p99_%d" % (c, c, c) for c in CONNS) + " (ms)\n")
        for k, p in rows:
            vals = []
            for c in map(str, CONNS):
                w = p["wrk"][c]
                for q in ("p50_us", "p90_us", "p99_us"):
                    v = w.get(q) if "error" not in w else None
                    vals.append("%.4f" % (v / 1e3) if v else "NaN")
            f.write('"%s" %s\n' % (k, " ".join(vals)))
    gp = os.path.join(results, "peers-latency.gp")
    png = os.path.join(results, "peers-latency.png")
    with open(gp, "w", encoding="utf-8") as f:
        f.write('set terminal pngcairo size 1500,520 font ",10" noenhanced\n'
                if os.system("gnuplot -e 'set terminal pngcairo' >/dev/null 2>&1") == 0
                else 'set terminal png size 1500,520\n')
        f.write('set output "%s"\n' % png)
        f.write("set multiplot layout 1,3 title 'wrk latency percentiles, 1 KiB body (%s)'\n"
                % doc["machine"]["date"])
        f.write("set style data histograms\nset style histogram clustered gap 1\n"
                "set style fill solid 0.8 border -1\nset logscale y\nset ylabel 'ms (log)'\n"
                "set xtics rotate by -30\nset key top left\nset grid ytics\n")
        for i, c in enumerate(CONNS):
            col = 2 + 3 * i
            f.write("set title '%d connection%s'\n" % (c, "" if c == 1 else "s"))
            f.write("plot '%s' using %d:xtic(1) title 'p50', '' using %d title 'p90', "
                    "'' using %d title 'p99'\n" % (dat, col, col + 1, col + 2))
        f.write("unset multiplot\n")


def report(raw_dir, results, peers):
    with open(os.path.join(raw_dir, "machine.json"), encoding="utf-8") as f:
        machine = json.load(f)
    res, origin = collect(raw_dir, peers, machine["transfer_bytes"])
    add_ratios(res)
    tun = collect_tunnels(raw_dir)
    gwp = res.get("azhexgate", {}).get("peak_rss_kb", {}).get("gateway")
    if tun is not None and "error" not in tun and gwp:
        tun["gateway_peak_kb"] = gwp
    doc = {"machine": machine, "peers": res, "origin_peak_rss_kb": origin,
           "tunnels": tun, "controller": collect_controller(raw_dir),
           "coldwarm": collect_coldwarm(raw_dir)}
    with open(os.path.join(results, "peers.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    with open(os.path.join(results, "peers.md"), "w", encoding="utf-8") as f:
        f.write(markdown(doc))
    plot(doc, results)
    return doc


WRK_SAMPLE = """Running 2s test @ http://127.0.0.1:18001/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.10ms  300.00us   9.00ms   90.00%
  Latency Distribution
     50%  980.00us
     75%    1.20ms
     90%    1.50ms
     99%    2.10ms
  116000 requests in 2.00s, 130.00MB read
Requests/sec:  58000.00
Transfer/sec:     65.00MB
"""


def self_test():
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = os.path.join(tmp, "raw"), os.path.join(tmp, "out")
        os.makedirs(os.path.join(raw, "direct"))
        os.makedirs(os.path.join(raw, "ssh"))
        os.makedirs(out)
        with open(os.path.join(raw, "machine.json"), "w", encoding="utf-8") as f:
            json.dump({"date": "x", "cpu": "c", "cores": 2, "mem_kb": 1 << 20, "kernel": "k",
                       "load_before": "0 0 0", "load_after": "0 0 0", "quick": 1,
                       "wrk_seconds": 2, "transfer_bytes": 1 << 28}, f)
        d = os.path.join(raw, "direct")
        for c in CONNS:
            with open(os.path.join(d, "wrk-%d.txt" % c), "w", encoding="utf-8") as f:
                f.write(WRK_SAMPLE)
        for n in ("download", "upload"):
            with open(os.path.join(d, n + ".json"), "w", encoding="utf-8") as f:
                f.write('{"code":200,"bytes":268435456,"Bps":1500000000,"s":0.2}')
        with open(os.path.join(d, "sse.json"), "w", encoding="utf-8") as f:
            f.write('{"open_us":{"p50":500,"p99":900},"first_event_us":{"p50":10500,"p99":11000}}')
        with open(os.path.join(d, "ws.err"), "w", encoding="utf-8") as f:
            f.write("status 404\n")
        with open(os.path.join(d, "rss"), "w", encoding="utf-8") as f:
            f.write("x 1 2048\n")
        with open(os.path.join(raw, "ssh", "failed"), "w", encoding="utf-8") as f:
            f.write("sshd not installed\n")
        canned = {  # the steps after the table, and a row with a limitation
            "hyco/limits": "ws not possible here\nupload one message at most\n",
            "hyco/upload_bytes": "1000\n", "hyco/log-errors": "Error: Too much data\n",
            "hyco/rss": "emulator 1 4096\n", "hyco/rss-row": "emulator 1 2048\n", "hyco/upload.json": '{"code":200,"bytes":1000,"Bps":10}',
            "coldwarm/coldwarm.json": json.dumps({
                "warm": [10000, 12000], "warm_new": [11000], "recent": [11000], "cold": [500000],
                "direct_new": [],
                "direct_warm": [], "errors": ["cold: no answer in 30 s"]}),
            "coldwarm/metrics.txt": 'azhexgate_gateway_pool_total{result="miss"} 20\n',
            "controller/controller.json": json.dumps({
                "arm_latency_ms": 2000, "post_samples": 5, "sessions": 1000,
                "post_warm_pool_ms": {"p50": 1, "p90": 2, "max": 3},
                "post_no_pool_ms": {"samples": 5, "p50": 2001}, "rss_kb_idle": 1000,
                "rss_kb_after_passes": 2000, "rss_kb_hwm": 2000, "reconcile_pass_ms_avg": 5}),
            "tunnels/count": "1000\n", "tunnels/rss": "before 1000\npass1 2000\n",
            "tunnels/pass1.txt": "502 0.001\n" * 10, "tunnels/pass1.wall_us": "1000\n",
            "tunnels/hot-before.txt": WRK_SAMPLE, "tunnels/hot-after.txt": WRK_SAMPLE,
            "tunnels/gateway-lookup.json": '{"requests":2000,"routes":10000,"p50_1_ms":0.2,'
                                           '"p99_1_ms":0.3,"p50_many_ms":0.2,"p99_many_ms":0.4}'}
        for name, text in canned.items():
            os.makedirs(os.path.join(raw, os.path.dirname(name)), exist_ok=True)
            with open(os.path.join(raw, name), "w", encoding="utf-8") as f:
                f.write(text)
        for c in CONNS:
            with open(os.path.join(raw, "hyco", "wrk-%d.txt" % c), "w", encoding="utf-8") as f:
                f.write(WRK_SAMPLE)
        doc = report(raw, out, ["direct", "ssh", "hyco"])
        w = doc["peers"]["direct"]["wrk"]["64"]
        assert w["rps"] == 58000.0 and w["p50_us"] == 980.0 and w["p99_us"] == 2100.0, w
        assert doc["peers"]["direct"]["ratio_to_direct"]["rps_64"] == 1.0
        assert doc["peers"]["direct"]["ws"]["error"] == "status 404"
        assert doc["peers"]["ssh"]["status"] == "not measured"
        md = read(os.path.join(out, "peers.md"))
        assert "not measured: sshd not installed" in md and "58000 (×1.00)" in md, md
        assert os.path.exists(os.path.join(out, "peers-latency.gp"))
        cw, t, c = doc["coldwarm"], doc["tunnels"], doc["controller"]
        assert cw["warm"]["n"] == 2 and cw["cold"]["failed"] == 1, cw
        assert cw["recent_to_warm_p50"] == 1.1 and cw["gateway_counters"]["pool_total_miss"] == 20
        assert t["gateway_bytes_per_tunnel"] == 1024 and t["hot_after"]["p50_us"] == 980.0, t
        assert t["visit_pass"]["codes"] == {"502": 10} and t["gw_bench"]["routes"] == 10000
        assert c["bytes_per_session"] == 1024, c
        h = doc["peers"]["hyco"]
        assert h["ws"]["limitation"] == "not possible here" and h["upload_bytes"] == 1000, h
        assert "n/a (§)" in md and "not possible here" in md and "Issue-5 targets" in md, md
        assert "hyco: Error: Too much data" in md and "emulator 2.0 MiB" in md, md
    print("peers_report self-test ok")


def main(argv):
    if argv[1:] == ["--self-test"]:
        self_test()
        return 0
    if len(argv) < 4:
        sys.stderr.write(__doc__)
        return 64
    report(argv[1], argv[2], argv[3:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
