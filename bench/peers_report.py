#!/usr/bin/env python3
"""Report of bench/run.sh: reads the raw outputs (wrk texts, curl/probe JSON, VmHWM lists) of
every peer and writes peers.json, peers.md, and peers-latency.{dat,gp} for gnuplot.

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
            p["download"] = transfer(raw, "download", expect)
            p["upload"] = transfer(raw, "upload", expect)
            p["sse"] = read_json(os.path.join(raw, "sse.json"), os.path.join(raw, "sse.err"))
            p["ws"] = read_json(os.path.join(raw, "ws.json"), os.path.join(raw, "ws.err"))
            died = read(os.path.join(raw, "died"))
            if died:
                p["died"] = [dict(zip(("process", "during"), l.split(" ", 1)))
                             for l in died.splitlines() if l.strip()]
            fr = read(os.path.join(raw, "first_request_us"))
            if fr:
                p["first_request_us"] = int(fr)
        rss = read(os.path.join(raw, "rss"))
        if rss:
            p["peak_rss_kb"] = {}
            for line in rss.splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[2].isdigit():
                    p["peak_rss_kb"][parts[0]] = int(parts[2])
                elif len(parts) == 3:
                    p["peak_rss_kb"][parts[0]] = None
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
        if len(parts) == 4:
            rss[parts[0]] = dict(zip(("gateway", "client", "emulator"),
                                     (int(x) if x.isdigit() else None for x in parts[1:])))
    t["rss_kb"] = rss
    for k in ("pass1", "pass2"):
        if k in rss and "before" in rss:
            t["%s_bytes_per_tunnel" % k] = {
                proc: (round((rss[k][proc] - rss["before"][proc]) * 1024 / t["count"])
                       if rss[k][proc] and rss["before"][proc] else None)
                for proc in ("gateway", "client", "emulator")}
    for k in ("pass1", "pass2"):
        t["curl_" + k] = parse_pass(read(os.path.join(raw, k + ".txt")) or "",
                                    read(os.path.join(raw, k + ".wall_us")))
    return t


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
    pick = lambda q: times[min(len(times) - 1, max(0, int(q * len(times) + 0.999) - 1))]
    n = len(times)
    return {"requests": n, "codes": codes, "wall_us": int(wall), "rps": n / (int(wall) / 1e6),
            "p50_us": pick(0.5), "p90_us": pick(0.9), "p99_us": pick(0.99),
            "socket_errors": 0, "non_2xx": n - codes.get("200", 0)}


def tunnels_md(t):
    if t is None:
        return []
    out = ["", "## %d tunnels" % t["count"], ""]
    if "error" in t:
        return out + ["Not measured: " + t["error"], ""]
    out.append("%d routes written into Redis (all pointing at the azhexgate row's Hybrid Connection),"
               " then two passes of curl --parallel (8 connections) over every `tNNNNN.%s` host: pass 1 finds "
               "every tunnel new to the gateway (Redis lookup, a rendezvous, a new stream pool), "
               "pass 2 finds them cached and pooled." % (t["count"], "bench.localhost"))
    out += ["", "| figure | value |", "|---|---|"]
    if "redis_bytes_per_route" in t:
        out.append("| Redis memory per route record | %d B |" % t["redis_bytes_per_route"])
    for k in ("pass1", "pass2"):
        w = t.get("curl_" + k, {})
        if w.get("codes"):
            out.append("| %s status codes | %s |" % (k, ", ".join(
                "%s × %d" % kv for kv in sorted(w["codes"].items()))))
    for k, label in (("pass1", "pass 1 (new tunnels)"), ("pass2", "pass 2 (cached)")):
        w = t.get("curl_" + k, {})
        if "error" in w:
            out.append("| %s | error: %s |" % (label, w["error"][:100]))
            continue
        out.append("| %s: req/s, p50 / p90 / p99 | %s, %s / %s / %s |" % (
            label, frps(w), fus(w["p50_us"]), fus(w["p90_us"]), fus(w["p99_us"])))
        per = t.get("%s_bytes_per_tunnel" % k, {})
        out.append("| RSS growth per tunnel after %s: gateway / client / emulator | %s |" % (
            label, " / ".join("%s B" % v if v is not None else "–"
                              for v in (per.get("gateway"), per.get("client"),
                                        per.get("emulator")))))
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
            "| peer | %s download | %s upload (echoed) | SSE stream open p50 | SSE first event p50 "
            "| WS handshake p50 | WS echo RTT p50 / p99 | peak RSS (VmHWM) |"
            % (size(m["transfer_bytes"]), size(m["transfer_bytes"])),
            "|---|---|---|---|---|---|---|---|"]
    for peer, p in res.items():
        rss = ", ".join("%s %s" % (k, "%.1f MiB" % (v / 1024) if v is not None else "died")
                        for k, v in p.get("peak_rss_kb", {}).items())
        if p["status"] != "ok":
            out.append("| %s | not measured |||||| %s |" % (peer, rss))
            continue
        r = p.get("ratio_to_direct", {})
        sse, ws = p["sse"], p["ws"]
        sse_o = fus(sse["open_us"]["p50"]) if "error" not in sse else "failed: " + sse["error"][:60]
        sse_f = fus(sse["first_event_us"]["p50"]) if "error" not in sse else "–"
        ws_h = fus(ws["handshake_us"]) if "error" not in ws else "failed: " + ws["error"][:60]
        ws_r = ("%s / %s" % (fus(ws["rtt_us"]["p50"]), fus(ws["rtt_us"]["p99"]))
                if "error" not in ws else "–")
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            peer, fbps(p["download"], r.get("download")), fbps(p["upload"], r.get("upload")),
            sse_o, sse_f, ws_h, ws_r, rss))
    if doc.get("origin_peak_rss_kb"):
        out.append("")
        out.append("Origins' peak RSS (shared by every peer): " + ", ".join(
            "%s %.1f MiB" % (k, v / 1024) for k, v in doc["origin_peak_rss_kb"].items()))
    deaths = ["%s: %s died during %s" % (k, d["process"], d.get("during", "?"))
              for k, p in res.items() for d in p.get("died", [])]
    if deaths:
        out += ["", "Processes that died during the run (later figures of that peer fail): "
                + "; ".join(deaths) + "."]
    extra = [(k, p["first_request_us"]) for k, p in res.items() if "first_request_us" in p]
    if extra:
        out += ["", "Time from starting the AzHexGate processes to the first 200 through the "
                "gateway (client connect + first rendezvous): " + ", ".join(
                    "%s %s" % (k, fus(v)) for k, v in extra)]
    out += tunnels_md(doc.get("tunnels"))
    out += ["", "Peak RSS is the sum of VmHWM over each process and its children (nginx workers, "
            "sshd session processes), read at the end of the run; `redis` is shared by both "
            "AzHexGate rows; `emulator` stands in for Azure Relay and is not part of a deployment. "
            "The `azhexgate` row's peaks include the many-tunnels step below (all its tunnels "
            "point at that row's client).",
            "", "Tunnel creation (POST /api/tunnels, cold ARM at 2 s vs warm pool) and the controller's "
            "memory with 10,000 sessions: bench/controller.sh (bench/results/controller.md). "
            "Not measured here yet (issue 9): the controller in this run, the other rows once more "
            "with the live profile (only AzHexGate has a live row).", ""]
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
    doc = {"machine": machine, "peers": res, "origin_peak_rss_kb": origin,
           "tunnels": collect_tunnels(raw_dir)}
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
        doc = report(raw, out, ["direct", "ssh"])
        w = doc["peers"]["direct"]["wrk"]["64"]
        assert w["rps"] == 58000.0 and w["p50_us"] == 980.0 and w["p99_us"] == 2100.0, w
        assert doc["peers"]["direct"]["ratio_to_direct"]["rps_64"] == 1.0
        assert doc["peers"]["direct"]["ws"]["error"] == "status 404"
        assert doc["peers"]["ssh"]["status"] == "not measured"
        md = read(os.path.join(out, "peers.md"))
        assert "not measured: sshd not installed" in md and "58000 (×1.00)" in md, md
        assert os.path.exists(os.path.join(out, "peers-latency.gp"))
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
