#!/usr/bin/env python3
"""Checks and reports the runs of scripts/bench (issue 8).

    bench-report.py check RESULTS [--only SYSTEM] [--strict]
        exits 1 if any run failed or saw errors: login errors, unhealthy
        sessions, stanza errors (and, with --strict, lost flood messages)
    bench-report.py report RESULTS WORKDIR MACHINE_JSON DOCS_DIR
        writes DOCS_DIR/benchmarks.md and the PNG plots
    bench-report.py summary JSON
        one short line for one loadtest result

RESULTS holds one JSON object a line: {"system", "transport", "case", "data"},
`data` being loadtest's own JSON line for that run.
"""

import csv
import glob
import json
import os
import sys

SYSTEMS = [
    ("direct", "tcp", "direct c2s to Prosody (the ceiling)"),
    ("prosody", "bosh", "Prosody native BOSH"),
    ("prosody", "websocket", "Prosody native WebSocket"),
    ("node-xmpp-bosh", "bosh", "node-xmpp-bosh BOSH"),
    ("node-xmpp-bosh", "websocket", "node-xmpp-bosh WebSocket (pre-RFC framing)"),
    ("punjab", "bosh", "Punjab BOSH"),
    ("xmpp-edge", "bosh", "**xmpp-edge BOSH**"),
    ("xmpp-edge", "websocket", "**xmpp-edge WebSocket**"),
    ("edge+fake", "bosh", "xmpp-edge BOSH, fake upstream (alone)"),
    ("edge+fake", "websocket", "xmpp-edge WebSocket, fake upstream (alone)"),
    ("fake", "tcp", "fake-upstream direct c2s (its own ceiling)"),
]

WHOSE = {
    "direct": "Prosody",
    "prosody": "whole server",
    "node-xmpp-bosh": "its own",
    "punjab": "its own",
    "xmpp-edge": "its own",
    "edge+fake": "its own",
    "fake": "fake-upstream",
}


def load(path):
    runs = {}
    order = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            key = (r["system"], r["transport"], r["case"])
            runs[key] = r["data"]
            order.append(key)
    return runs, order


def problems(key, d, strict):
    """What went wrong in one run (empty: nothing)."""
    system, transport, case = key
    out = []
    if d.get("failed"):
        return ["run failed (timed out or exited with an error)"]
    mode = d.get("mode")
    if d.get("login_errors"):
        out.append(f"login errors {d['login_errors']}")
    if d.get("errors"):
        out.append(f"errors {d['errors']}")
    if mode == "idle":
        if d["logged_in"] != d["sessions"]:
            out.append(f"{d['logged_in']} of {d['sessions']} logged in")
        if d["healthy_at_end"] != d["logged_in"]:
            out.append(f"{d['healthy_at_end']} of {d['logged_in']} healthy at the end")
        if d.get("idle_errors"):
            out.append(f"idle errors {d['idle_errors']}")
    if mode == "echo" and d["messages"] == 0:
        out.append("no messages exchanged")
    if mode == "flood" and strict and d["lost"] > 0:
        out.append(f"lost {d['lost']} of {d['sent']} messages")
    if mode == "flood" and d["sent"] == 0:
        out.append("nothing sent")
    if mode == "churn" and d["completed"] == 0:
        out.append("no session completed")
    if mode == "churn" and (d.get("leave_ms") or {}).get("max", 0) >= 5000:
        # loadtest gives a leave 5 s: one that takes them all was never answered.
        out.append(f"a session's leave went unanswered ({d['leave_ms']['max']:.0f} ms)")
    return [f"{system} {transport} {case}: {p}" for p in out]


def summary(line):
    r = json.loads(line)
    m = r.get("mode")
    if m == "echo":
        rtt = r["rtt_ms"]
        text = (f"{r['msgs_per_sec']:.0f} msg/s, rtt p50 {rtt['p50']} p99 {rtt['p99']} ms, "
                f"cpu/1000 {r['target_cpu_per_1000_msgs']:.4f} s")
    elif m == "idle":
        text = (f"{r['logged_in']}/{r['sessions']} in, {r['healthy_at_end']} healthy, "
                f"{r['kib_per_session']} KiB/session, {r['logins_per_sec']:.0f} logins/s")
    elif m == "flood":
        lat = r["latency_ms"]
        text = (f"offered {r['offered_per_sec']:.0f}/s, lost {r['lost']}/{r['sent']}, "
                f"p50 {lat['p50']} p99 {lat['p99']} ms")
    elif m == "churn":
        text = (f"{r['sessions_per_sec']:.0f} sessions/s ({r['completed']}/{r['attempted']}, "
                f"{r['skipped_target_busy']} skipped), p50 {r['setup_ms']['p50']} ms")
    else:
        return line[:200]
    steal = steal_cores(r)
    if steal is not None:
        text += f", host steal {steal:.2f} CPUs"
    errors = {**r.get("login_errors", {}), **r.get("errors", {}), **r.get("idle_errors", {})}
    if errors:
        text += f", errors {json.dumps(errors)[:300]}"
    return text


def check(argv):
    path = argv[0]
    only = argv[argv.index("--only") + 1] if "--only" in argv else None
    strict = "--strict" in argv
    runs, order = load(path)
    found = []
    for key in order:
        if only and key[0] != only:
            continue
        if key[2] in ("upstream-cpu", "skipped") or key[2].endswith("-prosody-cpu"):
            continue
        found += problems(key, runs[key], strict)
    if not order:
        found.append("no runs recorded")
    for p in found:
        print("bench check:", p, file=sys.stderr)
    print(f"bench check: {len(order)} runs, {len(found)} problems")
    return 1 if found else 0


# --- the report -----------------------------------------------------------------


def fmt(v, digits=0, unit=""):
    if v is None:
        return "n/a"
    if digits == 0:
        return f"{v:,.0f}{unit}"
    return f"{v:.{digits}f}{unit}"


def ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.{digits}f}x"


class Figures:
    def __init__(self, runs):
        self.runs = runs

    def get(self, system, transport, case):
        d = self.runs.get((system, transport, case))
        if d is None or d.get("failed"):
            return None
        return d

    def echo_rate(self, s, t):
        d = self.get(s, t, "echo")
        return d["msgs_per_sec"] if d and d["messages"] else None

    def echo_rtt(self, s, t, q):
        d = self.get(s, t, "echo")
        return d["rtt_ms"][q] if d and d["messages"] else None

    def pair_rtt(self, s, t, q):
        d = self.get(s, t, "pair")
        return d["rtt_ms"][q] if d and d["messages"] else None

    def cpu(self, s, t):
        d = self.get(s, t, "echo")
        return d["target_cpu_per_1000_msgs"] if d and d["messages"] else None

    def sys_cpu(self, s, t):
        """The kernel's part of `cpu` (absent from runs made before loadtest reported it)."""
        d = self.get(s, t, "echo")
        return d.get("target_sys_cpu_per_1000_msgs") if d and d["messages"] else None

    def upstream_cpu(self, s, t):
        d = self.get(s, t, "echo")
        u = self.get(s, t, "upstream-cpu")
        if not d or not u or not d["messages"]:
            return None
        return u["ticks"] / 100.0 * 1000.0 / d["messages"]

    def kib(self, s, t):
        d = self.get(s, t, "idle")
        return d["kib_per_session"] if d and d["logged_in"] else None

    def idle(self, s, t):
        return self.get(s, t, "idle")

    def logins(self, s, t):
        """Sessions set up (and ended) per second of the churn window: those
        admitted while fewer than 64 were in flight and completed. loadtest's
        own `sessions_per_sec` divides by the time until the last session has
        closed, which charges slow closing handshakes to the login rate."""
        return self.churn_rate(self.get(s, t, "churn"))

    @staticmethod
    def churn_rate(d):
        if not d or not d["completed"] or not d["offered_per_sec"]:
            return None
        window = d["attempted"] / d["offered_per_sec"]
        return d["completed"] / window if window else None

    def ramp_logins(self, s, t):
        """Logins per second while the idle run's sessions logged in (64 at a time)."""
        d = self.get(s, t, "idle")
        return d["logins_per_sec"] if d and d["logged_in"] else None

    ROUND_SYSTEMS = (("direct", "tcp", "tcp"), ("tcp-relay", "tcp", "relay"),
                     ("xmpp-edge", "bosh", "bosh"), ("xmpp-edge", "websocket", "websocket"),
                     ("node-xmpp-bosh", "bosh", "nxb-bosh"), ("node-xmpp-bosh", "websocket", "nxb-websocket"))

    def _by_round(self, case, figures, worked=lambda d: d["messages"]):
        """[(round, {key: figures(system, transport, run)})] over the alternating rounds' runs
        named case + round number, for the runs that worked (by default: moved messages)."""
        out = []
        i = 1
        while ("direct", "tcp", f"{case}{i}") in self.runs:
            row = {}
            for s, t, key in self.ROUND_SYSTEMS:
                d = self.get(s, t, f"{case}{i}")
                if d and worked(d):
                    row[key] = figures(s, t, i, d)
            out.append((i, row))
            i += 1
        return out

    def rounds(self):
        """Alternating rounds: [(round, {key: (msgs/s, cpu/1000, prosody cpu/1000, kernel cpu/1000)})],
        key "tcp" (direct), "relay" (the bare TCP relay), "bosh", "websocket" (xmpp-edge)."""
        def figures(s, t, i, d):
            u = self.get(s, t, f"ab{i}-prosody-cpu")
            pc = u["ticks"] / 100.0 * 1000.0 / d["messages"] if u else None
            return (d["msgs_per_sec"], d["target_cpu_per_1000_msgs"], pc,
                    d.get("target_sys_cpu_per_1000_msgs"), steal_cores(d))
        return self._by_round("ab", figures)

    def steal_range(self):
        """(lowest, median, highest) CPUs the host held back over the loaded echo runs of the
        alternating rounds, or None where loadtest did not report it."""
        xs = sorted(f[4] for _, r in self.rounds() for f in r.values() if f[4] is not None)
        return (xs[0], xs[len(xs) // 2], xs[-1]) if xs else None

    def pair_rounds(self, case="pair"):
        """One-pair runs of the alternating rounds: [(round, {key: (p50, p99)})], keys as in rounds().
        case "pin": the same runs with every process on CPU 0."""
        return self._by_round(case, lambda s, t, i, d: (d["rtt_ms"]["p50"], d["rtt_ms"]["p99"]))

    def churn_rounds(self):
        """Login churn runs of the alternating rounds: [(round, {key: (logins/s, setup p50 ms)})]."""
        return self._by_round("churn", lambda s, t, i, d: (self.churn_rate(d), d["setup_ms"]["p50"]),
                              worked=lambda d: d["completed"])

    def churn_ratio(self, t):
        """Median over the rounds of xmpp-edge's login rate over direct's in the same round."""
        return median_ratio(self.churn_rounds(), t, "tcp", 0)

    def pair_median(self, key, q, case="pair"):
        """Median over the rounds of one system's pair percentile (q 0: p50, 1: p99)."""
        xs = sorted(r[key][q] for _, r in self.pair_rounds(case) if key in r)
        return xs[len(xs) // 2] if xs else None

    def pair_ratio(self, t, case="pair"):
        """Median over the rounds of xmpp-edge's pair p99 over direct's in the same round."""
        return median_ratio(self.pair_rounds(case), t, "tcp", 1)

    def ab_ratio(self, t):
        """Median over the rounds of xmpp-edge's msgs/s over direct's in the same round."""
        return median_ratio(self.rounds(), t, "tcp", 0)

    def nxb_cpu_ratio(self, t):
        """Median over the rounds of node-xmpp-bosh's CPU per message over xmpp-edge's, same round."""
        return median_ratio(self.rounds(), "nxb-" + t, t, 1)

    def ab_median(self, t, k):
        xs = sorted(r[t][k] for _, r in self.rounds() if t in r and r[t][k] is not None)
        return xs[len(xs) // 2] if xs else None

    def scale(self, t):
        parts = [self.get("xmpp-edge", t, f"scale{i}") for i in (1, 2)]
        if any(p is None for p in parts):
            return None
        sessions = sum(p["sessions"] for p in parts)
        logged = sum(p["logged_in"] for p in parts)
        healthy = sum(p["healthy_at_end"] for p in parts)
        before = min(p["target_before"]["rss_kib"] for p in parts)
        after = max(p["target_after"]["rss_kib"] for p in parts)
        fds = max(p["target_after"]["fds"] for p in parts)
        return {
            "sessions": sessions,
            "logged_in": logged,
            "healthy": healthy,
            "kib": (after - before) / logged if logged else None,
            "rss_after_kib": after,
            "fds": fds,
            "logins_per_sec": sum(p["logins_per_sec"] for p in parts),
        }


def steal_cores(d):
    """CPUs the hypervisor held back from this VM during a run, on average (loadtest reads
    the `steal` column of /proc/stat), or None."""
    m = d.get("machine")
    return m.get("steal_cores") if isinstance(m, dict) else None


def median_ratio(rounds, num, den, q):
    """Median over rounds of figure q of system num over the same figure of den, same round."""
    xs = sorted(r[num][q] / r[den][q] for _, r in rounds if num in r and den in r and r[den][q])
    return xs[len(xs) // 2] if xs else None


def round_table(w, rounds, cell, q, median_row):
    """The per-round table of direct, the relay and xmpp-edge: cell(figures) for each system, and
    xmpp-edge's figure q over direct's of the same round."""
    w("| round | direct | bare TCP relay | xmpp-edge BOSH | x direct | xmpp-edge WebSocket | x direct |")
    w("|---|---|---|---|---|---|---|")
    for i, r in rounds:
        def c(t):
            return cell(t, r[t]) if t in r else "n/a"

        def x(t):
            return ratio(r[t][q], r["tcp"][q]) if t in r and "tcp" in r else "n/a"

        w(f"| {i} | {c('tcp')} | {c('relay')} | {c('bosh')} | {x('bosh')} | {c('websocket')} | {x('websocket')} |")
    w(median_row)


def pair_median_row(f, case):
    """The median row of a one-pair round table: p50 / p99 per system, xmpp-edge's p99 over direct's."""
    def cell(k):
        a, b = f.pair_median(k, 0, case), f.pair_median(k, 1, case)
        return f"{a:.2f} / {b:.2f}" if a is not None and b is not None else "n/a"

    return (f"| median | {cell('tcp')} | {cell('relay')} | {cell('bosh')} | {fmt(f.pair_ratio('bosh', case), 2)}x "
            f"| {cell('websocket')} | {fmt(f.pair_ratio('websocket', case), 2)}x |")


def rss_series(workdir, runs):
    """(label, sessions[], MiB[]) per sampled idle run, cut at the end of login."""
    series = []
    for path in sorted(glob.glob(os.path.join(workdir, "rss-*.csv"))):
        name = os.path.basename(path)[4:-4]
        kpath = path[:-4] + ".k"
        try:
            k = int(open(kpath).read().strip())
            rows = list(csv.DictReader(open(path)))
        except (OSError, ValueError):
            continue
        if len(rows) < 3:
            continue
        if name.startswith("edge-scale-"):
            t = name[len("edge-scale-"):]
            label = f"xmpp-edge {t} (9,000 run)"
            parts = [runs.get(("xmpp-edge", t, f"scale{i}")) or {} for i in (1, 2)]
            target = sum(p.get("logged_in", 0) for p in parts)
        else:
            system, _, t = name.rpartition("-")
            label = f"{system} {t}"
            target = (runs.get((system, t, "idle")) or {}).get("logged_in", 0)
        rss0 = int(rows[0]["rss_kib"])
        fd0 = int(rows[0]["fds"])
        ns = [max(0.0, (int(r["fds"]) - fd0) / k) for r in rows]
        # Up to the moment the most sessions were open: after it they close.
        top = max(range(len(ns)), key=lambda i: ns[i])
        xs = [min(n, target) if target else n for n in ns[: top + 1]]
        ys = [(int(r["rss_kib"]) - rss0) / 1024.0 for r in rows[: top + 1]]
        series.append((label, xs, ys))
    return series


def plots(runs, workdir, docs):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench report: python3-matplotlib missing, no plots", file=sys.stderr)
        return []
    made = []
    fig, ax = plt.subplots(figsize=(8, 5))
    colours = plt.get_cmap("tab20").colors
    for i, (label, xs, ys) in enumerate(rss_series(workdir, runs)):
        edge = label.startswith("xmpp-edge") or label.startswith("edge+fake")
        ax.plot(xs, ys, label=label, linewidth=2.0 if edge else 1.3,
                linestyle="-" if edge else "--", color=colours[(i * 2) % 20 if i < 10 else (i * 2 + 1) % 20])
    ax.set_xlabel("sessions logged in (from the process's open sockets)")
    ax.set_ylabel("RSS growth, MiB")
    ax.set_title("Memory of the process under test while sessions log in")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(docs, "bench-sessions-rss.png"), dpi=110)
    plt.close(fig)
    made.append("bench-sessions-rss.png")

    fig, ax = plt.subplots(figsize=(8, 5))
    colours = plt.get_cmap("tab10").colors
    for n, (system, transport, label) in enumerate(SYSTEMS):
        pts = []
        for (s, t, case), d in runs.items():
            if s == system and t == transport and case.startswith("flood") and not d.get("failed"):
                if d["latency_ms"]["p99"] > 0:
                    pts.append((d["offered_per_sec"], d["latency_ms"]["p99"], d["lost"]))
        if not pts:
            continue
        pts.sort()
        edge = system in ("xmpp-edge", "edge+fake")
        line = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label.replace("**", ""),
                       linestyle="-" if edge else "--", linewidth=2.0 if edge else 1.3,
                       color=colours[n % 10])
        lost = [p for p in pts if p[2] > 0]
        if lost:
            ax.scatter([p[0] for p in lost], [p[1] for p in lost], marker="x", s=90,
                       color=line[0].get_color())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered rate, messages/s (open loop)")
    ax.set_ylabel("p99 latency, ms (from the scheduled send time)")
    ax.set_title("Offered rate vs p99 latency (x: messages lost)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(docs, "bench-flood-p99.png"), dpi=110)
    plt.close(fig)
    made.append("bench-flood-p99.png")
    return made


# The peers' figures in issue 8's table (same machine kind, a calmer sitting).
ISSUE_CPU = {("direct", "tcp"): 0.073, ("prosody", "bosh"): 0.34, ("prosody", "websocket"): 0.12,
             ("node-xmpp-bosh", "bosh"): 0.124, ("node-xmpp-bosh", "websocket"): 0.093,
             ("punjab", "bosh"): 0.52}
ISSUE_PAIR_P99 = {("direct", "tcp"): 0.7, ("prosody", "bosh"): 1.2, ("prosody", "websocket"): 0.9,
                  ("node-xmpp-bosh", "bosh"): 7.2, ("node-xmpp-bosh", "websocket"): 4.3,
                  ("punjab", "bosh"): 3.6}


def reading(f, w, direct_rate):
    """What this sitting's figures say beyond pass and fail."""
    w("## Reading this run")
    w("")
    factors = []
    for key, cpu in ISSUE_CPU.items():
        mine = f.cpu(*key)
        if mine:
            factors.append((key, mine / cpu))
    if factors:
        text = ", ".join(f"{k[0]} {k[1]} {x:.1f}x" for k, x in factors)
        w(f"- **CPU per message ran high in this sitting**: the peers used more CPU per 1,000 messages than")
        w(f"  in issue 8's table ({text}). CPU time per message grows when other work shares the cores")
        w("  (caches, frequency), so absolute CPU targets are best read against the peers of the same")
        w("  run:")
        for t, need in (("bosh", 4), ("websocket", 6)):
            e, n = f.cpu("xmpp-edge", t), f.cpu("node-xmpp-bosh", t)
            if e and n:
                w(f"  over {t}, xmpp-edge used {n / e:.1f}x less CPU per message than node-xmpp-bosh "
                  f"(the target asks {need}x less).")
        w("")
    pairs = []
    for key, p99 in ISSUE_PAIR_P99.items():
        mine = f.pair_rtt(*key, "p99")
        if mine:
            pairs.append(f"{key[0]} {key[1]} {mine:.1f} ms (issue: {p99})")
    if pairs:
        w("- **One-pair p99 is scheduling noise here**: " + ", ".join(pairs) + ".")
        e50 = [(t, f.pair_rtt("xmpp-edge", t, "p50")) for t in ("bosh", "websocket")]
        d50 = f.pair_rtt("direct", "tcp", "p50")
        if d50 and all(v for _, v in e50):
            w("  The medians are steadier: xmpp-edge adds " + ", ".join(
                f"{v - d50:.3f} ms over {t}" for t, v in e50) + f" to direct's {d50:.3f} ms;")
        alone = [(t, f.pair_rtt("edge+fake", t, "p99")) for t in ("bosh", "websocket")]
        w("  in front of the fake upstream its p99 was " + ", ".join(
            f"{fmt(v, 3)} ms ({t})" for t, v in alone) + ".")
        d_pin, d_pair = f.pair_median("tcp", 0, "pin"), f.pair_median("tcp", 0)
        if d_pin and d_pair:
            w(f"  With every process on CPU 0, direct's p50 was {d_pin:.2f} ms against {d_pair:.2f} ms as usual")
            w(f"  (medians of the rounds), and its p99 {fmt(f.pair_median('tcp', 1, 'pin'), 2)} ms against "
              f"{fmt(f.pair_median('tcp', 1), 2)}" + (
                  ": much of a round trip here is the wake-up of an idle vCPU, which the runs on CPU 0 leave out."
                  if d_pin < 0.75 * d_pair else "."))
        w("")
    up = [(t, f.upstream_cpu("xmpp-edge", t)) for t in ("bosh", "websocket")]
    dcpu = f.cpu("direct", "tcp")
    if dcpu and all(v for _, v in up):
        w(f"- **Throughput is Prosody's**: Prosody used " + ", ".join(
            f"{v:.3f} s ({t})" for t, v in up) + f" per 1,000 messages behind xmpp-edge against {dcpu:.3f} s")
        w("  with the generator speaking c2s itself (separate runs, minutes apart). xmpp-edge, the")
        w("  generator and Prosody share two cores, so every CPU-second xmpp-edge spends is one Prosody")
        w("  may lack, and the machine's other load differs from run to run.")
        pc = [(t, f.ab_median(t, 2)) for t in ("tcp", "bosh", "websocket")]
        if all(v is not None for _, v in pc):
            w("  In the alternating rounds Prosody's median CPU per 1,000 messages was " + ", ".join(
                f"{v:.3f} s ({'direct' if t == 'tcp' else t})" for t, v in pc) + ".")
        w("")
    d500 = f.get("direct", "tcp", "flood500")
    e500 = [f.get("xmpp-edge", t, "flood500") for t in ("bosh", "websocket")]
    e99 = min((e["latency_ms"]["p99"] for e in e500 if e), default=None)
    if d500 and e99 and d500["latency_ms"]["p99"] > 3 * e99:
        w(f"- **Direct flood latency at low rates** ({d500['latency_ms']['p99']:.1f} ms p99 at 500/s, against")
        w("  xmpp-edge's in front of the same Prosody) is probably Nagle (on in Prosody) meeting the")
        w("  generator's delayed ACKs on the direct c2s streams, which xmpp-edge's upstream sockets")
        w("  acknowledge at once; not investigated further. The loaded echo is unaffected.")
        w("")


def report(argv):
    path, workdir, machine, docs = argv[0], argv[1], json.loads(argv[2]), argv[3]
    runs, order = load(path)
    f = Figures(runs)
    images = plots(runs, workdir, docs)
    idle_n = next((d["sessions"] for (s, t, c), d in runs.items() if c == "idle" and not d.get("failed")), 5000)
    pair_n = next((d["messages"] // 2 for (s, t, c), d in runs.items()
                   if c.startswith("pair") and not d.get("failed") and d.get("messages")), 1000)
    L = []
    w = L.append
    w("# Benchmarks: xmpp-edge and its peers")
    w("")
    w("Generated by `scripts/bench` (issue 8); every figure below comes from one sitting, so the")
    w("ratios compare runs made minutes apart on the same machine. Re-run `scripts/bench` to")
    w("reproduce; `scripts/bench --smoke` is the one-minute version that `scripts/test` runs.")
    w("What xmpp-edge's CPU per message is made of, and what was changed for it: docs/performance.md.")
    w("")
    w("## The machine")
    w("")
    w(f"- {machine['nproc']} CPUs: {machine['cpu']}; {machine['mem_gib']} GiB; Linux {machine['kernel']}")
    w(f"- open files per process: {machine['open_files']} (root cannot raise it here)")
    w(f"- Prosody {machine['prosody']} (Lua {machine['lua']}), Node.js {machine['node']}, {machine['rustc']}")
    w(f"- xmpp-edge at commit {machine['commit']}; node-xmpp-bosh 0.7.10 (npm, node-expat 2.4.1)")
    w(f"- load average before / after: {machine['load_before']} / {machine['load_after']}; "
      f"the runs took {machine['elapsed_secs'] // 60} min {machine['elapsed_secs'] % 60} s")
    w("")
    w("The load generator (`loadtest`), the system under test and Prosody share the two cores, so")
    w("every figure includes the generator's own cost; a load average above 2 at the start means")
    w("other work was running too, and absolute numbers will move between sittings more than ratios.")
    w("")
    w("## The systems")
    w("")
    w("Each starts from its registry package by a script in `loadtest/peers/`, fresh for every system")
    w("and transport, in front of a fresh Prosody with `loadtest/prosody.cfg.lua` (anonymous logins).")
    w("")
    w("- **direct**: `loadtest --transport tcp` speaking c2s to Prosody (`loadtest/peers/prosody/start`,")
    w("  Debian's package). Prosody is single-threaded, so it can use one of the two cores at most:")
    w("  it is the bottleneck of every system in front of it.")
    w("- **Prosody native**: the same Prosody's `mod_bosh` (`/http-bind`) and `mod_websocket`")
    w("  (`/xmpp-websocket`) on its HTTP port; its CPU and memory are the whole server's.")
    w("- **node-xmpp-bosh 0.7.10** (`loadtest/peers/node-xmpp-bosh/start`: `npm ci` of the pinned")
    w("  lock file, with an npm `overrides` entry for node-expat 2.4.1 so it builds on Node 20). It")
    w("  hard-codes upstream port 5222, so its Prosody listens on 127.0.0.1:5222. Its WebSocket speaks")
    w("  only the pre-RFC 7395 framing (`<stream:stream>` in messages), which `loadtest --ws-legacy`")
    w("  speaks. It looks up DNS SRV records; `hosts-only.js`, preloaded with `node --require`, makes")
    w("  every `dns.resolve*` fail at once and answers `dns.lookup` from /etc/hosts, so it never")
    w("  queries the system resolver (checked with `strace -f -e trace=connect,sendto,sendmsg`: its only")
    w("  connections go to 127.0.0.1:5222).")
    w("- **Punjab 0.15** (`loadtest/peers/punjab/start`): the PyPI sdist (sha256-checked) is Python 2")
    w("  code; the install converts it with lib2to3 plus `py3fixup.py` (our fix-ups for bytes and")
    w("  Twisted API changes; every edit must apply or the install fails) and runs it on Twisted 22.4.0")
    w("  (Debian 12's version; hash-pinned wheels in a venv). `run.py` gives every session the route")
    w("  `xmpp:127.0.0.1:PORT`, so it connects by IP and never looks a name up. Punjab has no")
    w("  `xmpp:restart`: it restarts the server stream itself on `<success/>`, which our client's restart")
    w("  request meets as an ordinary poll. BOSH only; single-threaded.")
    w("- **xmpp-edge**: the release build, default settings except per-IP admission limits raised,")
    w("  metrics and admin listeners off, log level `warn`.")
    w("- **xmpp-edge alone**: in front of `fake-upstream` (`loadtest/src/bin/fake-upstream.rs`), a")
    w("  minimal c2s server (SASL PLAIN/ANONYMOUS, bind, session, ping, routing by JID; one task per")
    w("  connection) that costs far less per message than Prosody.")
    w("")
    w("## How it was measured")
    w("")
    w("- **loaded echo**: 200 sessions in 100 pairs, 200 ping-pong round trips per pair (40,000 messages);")
    w("  messages per second counts both directions. CPU-s per 1,000 messages is the system under test's")
    w("  user + system time from `/proc/PID/stat` over that run: Prosody for direct and native,")
    w("  node-xmpp-bosh's own process, xmpp-edge's own process. \"upstream CPU\" is Prosody's (or")
    w("  fake-upstream's) over the same run: what the front end costs the server behind it.")
    w("- **one pair**: 2 sessions, 1,000 round trips one after another; RTT percentiles. The")
    w("  alternating rounds run it again after each loaded echo, which gives medians over the rounds,")
    w("  and before it, on the fresh processes, with every process on CPU 0.")
    w(f"- **idle**: {idle_n:,} sessions logged in (64 at a time, from 127.0.0.1-4) and left idle (BOSH: one")
    w("  request parked, `hold=1`, on one of its two keep-alive connections; WebSocket: the open socket);")
    w("  RSS growth of the process under test divided by the sessions; every session must answer a")
    w("  ping at the end. Runs first on a fresh process, so memory freed by other runs hides nothing.")
    w("- **logins**: `loadtest churn`, 3,000 sessions/s offered for 4 s with at most 64 in flight")
    w("  (the rest are skipped, not queued); each session logs in (SASL ANONYMOUS, bind) and leaves.")
    w("  The figure is sessions completed per second of that window: the set-up rate the system")
    w("  sustains (log in, bind, leave). The second login figure is the rate at which the idle run's")
    w(f"  {idle_n:,} sessions logged in, 64 at a time, while the process grew. The alternating rounds")
    w("  run the churn again for each system, and the login verdicts read their median.")
    w("- **flood**: 20 sessions in pairs, a fixed offered rate for 3 s, open loop; latency from the")
    w("  scheduled send time, so stalls are not hidden (coordinated omission).")
    w("")
    w("## Results")
    w("")
    w("| system | loaded echo msgs/s | x direct | echo RTT p50 / p99 ms | one pair RTT p50 / p99 / p999 ms "
      f"| KiB per idle session @{idle_n:,} | CPU-s per 1,000 msgs | upstream CPU-s per 1,000 | logins/s (churn) | x direct "
      f"| logins/s ({idle_n:,} ramp) | x direct |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|")
    direct_ramp = f.ramp_logins("direct", "tcp")
    direct_rate = f.echo_rate("direct", "tcp")
    direct_logins = f.logins("direct", "tcp")
    for s, t, label in SYSTEMS:
        if not any(k[0] == s and k[1] == t for k in runs):
            continue
        rate = f.echo_rate(s, t)
        idle = f.idle(s, t)
        kib = f.kib(s, t)
        kib_txt = "n/a" if kib is None else f"{kib:.1f} ({WHOSE[s]})"
        if idle and idle["healthy_at_end"] != idle["sessions"]:
            kib_txt += f", {idle['healthy_at_end']} healthy"
        cpu = f.cpu(s, t)
        cpu_txt = "n/a" if cpu is None else f"{cpu:.4f} ({WHOSE[s]})"
        ucpu = f.upstream_cpu(s, t)
        w(f"| {label} | {fmt(rate)} | {ratio(rate, direct_rate)} "
          f"| {fmt(f.echo_rtt(s, t, 'p50'), 2)} / {fmt(f.echo_rtt(s, t, 'p99'), 2)} "
          f"| {fmt(f.pair_rtt(s, t, 'p50'), 3)} / {fmt(f.pair_rtt(s, t, 'p99'), 3)} / {fmt(f.pair_rtt(s, t, 'p999'), 3)} "
          f"| {kib_txt} | {cpu_txt} | {fmt(ucpu, 4)} "
          f"| {fmt(f.logins(s, t))} | {ratio(f.logins(s, t), direct_logins)} "
          f"| {fmt(f.ramp_logins(s, t))} | {ratio(f.ramp_logins(s, t), direct_ramp)} |")
    skipped = [k for k in runs if k[2] == "skipped"]
    for k in skipped:
        w("")
        w(f"{k[0]} was not measured: {runs[k].get('reason')}.")
    w("")
    w("Idle memory of the peers in front of Prosody is their own (node-xmpp-bosh) or the whole server's")
    w("(Prosody native); xmpp-edge's is its own. Each adds to Prosody's own cost per session, which is the")
    w("direct row's figure.")
    w("")

    # 9,000 sessions
    w("## 9,000 sessions in one xmpp-edge process")
    w("")
    w("Two generator processes of 4,500 sessions each (127.0.0.1-8), so none holds more than 20,000 files;")
    w("xmpp-edge holds two sockets per session (client and upstream), about 18,000 files.")
    w("")
    w("| transport | logged in | healthy at the end | KiB per idle session | RSS after, MiB | open files | logins/s |")
    w("|---|---|---|---|---|---|---|")
    for t in ("bosh", "websocket"):
        sc = f.scale(t)
        if sc is None:
            w(f"| {t} | failed | | | | | |")
            continue
        w(f"| {t} | {sc['logged_in']:,} / {sc['sessions']:,} | {sc['healthy']:,} | {fmt(sc['kib'], 1)} "
          f"| {sc['rss_after_kib'] / 1024:.1f} | {sc['fds']:,} | {sc['logins_per_sec']:,.0f} |")
    w("")

    # flood
    w("## Offered rate vs latency (flood)")
    w("")
    rates = sorted({d["offered_per_sec"] for (s, t, c), d in runs.items() if c.startswith("flood") and not d.get("failed")})
    w("p50 / p99 ms at each offered rate (messages/s); lost messages in brackets.")
    w("")
    w("| system | " + " | ".join(f"{r:,.0f}/s" for r in rates) + " |")
    w("|---|" + "---|" * len(rates))
    for s, t, label in SYSTEMS:
        cells = []
        for r in rates:
            d = f.get(s, t, f"flood{r:.0f}")
            if d is None:
                cells.append("n/a")
                continue
            lat = d["latency_ms"]
            cell = f"{lat['p50']:.2f} / {lat['p99']:.2f}"
            if d["lost"]:
                cell += f" [{d['lost']} lost]"
            cells.append(cell)
        if any(c != "n/a" for c in cells):
            w(f"| {label} | " + " | ".join(cells) + " |")
    w("")

    rounds = f.rounds()
    if rounds:
        w("## Throughput, direct and xmpp-edge in alternating rounds")
        w("")
        w("Each round runs the loaded echo over direct c2s, through a bare TCP relay")
        w("(`loadtest/src/bin/tcp-relay.rs`: tokio's `copy_bidirectional`, one task per connection, parsing")
        w("nothing), through xmpp-edge over BOSH and over WebSocket, and through node-xmpp-bosh (its CPU is")
        w("compared below), in an order that rotates from round to round. Every run has a fresh Prosody")
        w("and a fresh front end: one Prosody serving every round slowed down run after run, which favoured")
        w("whichever system ran earlier. Messages/s (the front end's CPU-s per 1,000 messages; Prosody's")
        w("CPU-s per 1,000 messages).")
        w("")
        def ab_cell(t, figures):
            rate, cpu, pc, _, _ = figures
            own = "" if t == "tcp" else f"{cpu:.4f}; "
            return f"{rate:,.0f} ({own}{fmt(pc, 3)})"

        round_table(w, rounds, ab_cell, 0,
                    f"| median | | | | {fmt(f.ab_ratio('bosh'), 2)}x | | {fmt(f.ab_ratio('websocket'), 2)}x |")
        w("")
        steal = f.steal_range()
        if steal:
            w("**CPU the host took.** This machine is a VM on a shared host. During these runs the")
            w(f"hypervisor held back {steal[0]:.2f} to {steal[2]:.2f} of its {machine['nproc']} CPUs on average")
            w(f"(median {steal[1]:.2f}; the `steal` column of /proc/stat, which no process's own CPU time")
            if steal[2] < 0.1:
                w("shows). That is too little to account for the spread between the rounds above: the")
                w("host took no CPU away from these runs, yet the same system's rate moved from round to")
                w("round (docs/performance.md has what was measured about it). CPUs held back, per run:")
            else:
                w("shows). Prosody needs a whole CPU in every run, so a run in which the host held back more")
                w("left less for it, whichever front end the run measures. CPUs held back, per run:")
            w("")
            names = [("tcp", "direct"), ("relay", "bare TCP relay"), ("bosh", "xmpp-edge BOSH"),
                     ("websocket", "xmpp-edge WebSocket"), ("nxb-bosh", "node-xmpp-bosh BOSH"),
                     ("nxb-websocket", "node-xmpp-bosh WebSocket")]
            w("| round | " + " | ".join(n for _, n in names) + " |")
            w("|---|" + "---|" * len(names))
            for i, r in rounds:
                w(f"| {i} | " + " | ".join(fmt(r[k][4], 2) if k in r else "n/a" for k, _ in names) + " |")
            w("")
        floor = f.ab_median("relay", 1)
        if floor:
            floor_k = f.ab_median("relay", 3)
            edge = [(t, f.ab_median(t, 1), f.ab_median(t, 3)) for t in ("bosh", "websocket")]
            w(f"**The floor.** The bare relay's median CPU was {floor:.4f} s per 1,000 messages"
              + (f" ({floor_k:.4f} of it in the kernel)" if floor_k is not None else "")
              + ": reading and writing each message once on each side, nothing else. xmpp-edge's medians: "
              + ", ".join(f"{t} {c:.4f} s ({c / floor:.1f}x the floor"
                          + (f"; kernel {k:.4f}" if k is not None else "") + ")"
                          for t, c, k in edge if c) + ".")
            w("")

    if rounds and any("nxb-bosh" in r or "nxb-websocket" in r for _, r in rounds):
        w("### CPU against node-xmpp-bosh, in the same rounds")
        w("")
        w("node-xmpp-bosh runs the same loaded echo in every round (BOSH, and WebSocket with its pre-RFC")
        w("framing). CPU-s per 1,000 messages of each front end; \"x less\" is node-xmpp-bosh's over")
        w("xmpp-edge's of the same round.")
        w("")
        w("| round | xmpp-edge BOSH | node-xmpp-bosh BOSH | x less | xmpp-edge WebSocket | node-xmpp-bosh WebSocket | x less |")
        w("|---|---|---|---|---|---|---|")

        def ncell(r, k):
            return f"{r[k][1]:.4f}" if k in r else "n/a"

        def nx(r, t):
            n = "nxb-" + t
            return f"{r[n][1] / r[t][1]:.2f}x" if t in r and n in r and r[t][1] else "n/a"

        for i, r in rounds:
            w(f"| {i} | {ncell(r, 'bosh')} | {ncell(r, 'nxb-bosh')} | {nx(r, 'bosh')} "
              f"| {ncell(r, 'websocket')} | {ncell(r, 'nxb-websocket')} | {nx(r, 'websocket')} |")
        w(f"| median | | | {fmt(f.nxb_cpu_ratio('bosh'), 2)}x | | | {fmt(f.nxb_cpu_ratio('websocket'), 2)}x |")
        w("")

    pair_rounds = f.pair_rounds()
    if pair_rounds:
        w("## One pair, in the same alternating rounds")
        w("")
        w("After each loaded echo of a round, the same system runs the one-pair echo (2 sessions,")
        w(f"{pair_n:,} round trips). Round-trip p50 / p99 in ms; \"x direct\" is the p99 over direct's p99 of")
        w("the same round.")
        w("")
        round_table(w, pair_rounds, lambda t, p: f"{p[0]:.2f} / {p[1]:.2f}", 1, pair_median_row(f, "pair"))
        w("")
        relay99, direct99 = f.pair_median("relay", 1), f.pair_median("tcp", 1)
        if relay99 and direct99 and relay99 > 5 * direct99:
            w(f"The bare relay's p99 ({relay99:.1f} ms) has the signature of Nagle's algorithm (on in Prosody) waiting")
            w("for an acknowledgement that Linux delays by up to 40 ms: the relay, like most proxies, lets")
            w("the kernel choose when to acknowledge. xmpp-edge acknowledges what it reads from the server")
            w("at once (`TCP_QUICKACK`, docs/performance.md), and pays one system call per read for it.")
            w("")

    pin_rounds = f.pair_rounds("pin")
    if pin_rounds:
        w("## One pair, every process on one CPU")
        w("")
        w("Before its loaded echo, on fresh processes, each system of a round runs the one-pair echo")
        w("with every thread of the server, the front end and the generator on CPU 0 (`taskset`). No")
        w("wake-up then has to reach the other vCPU, which in this VM costs about as much as the")
        w("software's own work (docs/performance.md), so these figures say more about the software")
        w("and less about the host. Round-trip p50 / p99 in ms, as above.")
        w("")
        round_table(w, pin_rounds, lambda t, p: f"{p[0]:.2f} / {p[1]:.2f}", 1, pair_median_row(f, "pin"))
        w("")

    churn_rounds = f.churn_rounds()
    if churn_rounds:
        w("## Logins, in the same alternating rounds")
        w("")
        w("After its one-pair run, each system of a round runs the login churn (as in the results table).")
        w("Sessions set up per second (set-up p50 in ms); \"x direct\" is the rate over direct's of the")
        w("same round.")
        w("")
        round_table(w, churn_rounds, lambda t, c: f"{c[0]:,.0f} ({c[1]:.0f})", 0,
                    f"| median | | | | {fmt(f.churn_ratio('bosh'), 2)}x | | {fmt(f.churn_ratio('websocket'), 2)}x |")
        w("")

    # ratios
    w("## xmpp-edge against each peer, same run")
    w("")
    w("Throughput and logins: higher is better for xmpp-edge above 1.00x; latency, memory and CPU:")
    w("lower is better below 1.00x.")
    w("")
    w("| xmpp-edge vs | loaded echo msgs/s | one pair RTT p99 | KiB per idle session | CPU-s per 1,000 | logins/s |")
    w("|---|---|---|---|---|---|")
    for t in ("bosh", "websocket"):
        peers = [("direct", "tcp", "direct c2s"), ("prosody", t, "Prosody native"),
                 ("node-xmpp-bosh", t, "node-xmpp-bosh")]
        if t == "bosh":
            peers.append(("punjab", t, "Punjab"))
        for peer, pt, name in peers:
            w(f"| {t}: {name} | {ratio(f.echo_rate('xmpp-edge', t), f.echo_rate(peer, pt))} "
              f"| {ratio(f.pair_rtt('xmpp-edge', t, 'p99'), f.pair_rtt(peer, pt, 'p99'))} "
              f"| {ratio(f.kib('xmpp-edge', t), f.kib(peer, pt))} "
              f"| {ratio(f.cpu('xmpp-edge', t), f.cpu(peer, pt))} "
              f"| {ratio(f.logins('xmpp-edge', t), f.logins(peer, pt))} |")
    w("")

    # targets
    w("## The targets of issue 8")
    w("")
    w("| target | BOSH | WebSocket |")
    w("|---|---|---|")

    def verdict(ok, text):
        if ok is None:
            return "n/a"
        return ("**pass**" if ok else "**FAIL**") + f": {text}"

    def thr(t, need):
        r = f.echo_rate("xmpp-edge", t)
        if r is None or not direct_rate:
            return verdict(None, "")
        x = r / direct_rate
        ab = f.ab_ratio(t)
        if ab is None:
            return verdict(x >= need, f"{x:.2f}x direct ({r:,.0f} vs {direct_rate:,.0f} msgs/s), needs >= {need:.2f}x")
        # Three digits: 0.849 must not read as the 0.85 it fails.
        return verdict(ab >= need, f"{ab:.3f}x direct, median of the alternating rounds, needs >= {need:.2f}x "
                       f"(the separate runs of the results table: {x:.2f}x)")

    def cpu_t(t, need):
        c = f.cpu("xmpp-edge", t)
        if c is None:
            return verdict(None, "")
        ab = f.ab_median(t, 1)
        also = f"; alternating rounds' median {ab:.4f}" if ab is not None else ""
        k = f.sys_cpu("xmpp-edge", t)
        kernel = f" ({k:.4f} of it in the kernel)" if k is not None else ""
        floor = f.ab_median("relay", 1)
        also += f" (a bare TCP relay's: {floor:.4f})" if floor else ""
        return verdict(c <= need, f"{c:.4f} s per 1,000 msgs{kernel}{also}; needs <= {need:.3f}")

    # The issue's absolute figures were taken on a quieter sitting; the same
    # targets as ratios to what was measured minutes apart in this run.
    def cpu_rel(t, times_less):
        e, n = f.cpu("xmpp-edge", t), f.cpu("node-xmpp-bosh", t)
        if not e or not n:
            return verdict(None, "")
        separate = f"{n / e:.1f}x less than node-xmpp-bosh {t} ({e:.4f} vs {n:.4f})"
        median = f.nxb_cpu_ratio(t)
        if median is None:
            return verdict(n / e >= times_less, f"{separate}, needs >= {times_less}x")
        return verdict(median >= times_less, f"{median:.2f}x less than node-xmpp-bosh {t}, median of the "
                       f"alternating rounds, needs >= {times_less}x (the separate runs: {separate})")

    def rtt_rel(t, need_ms):
        e, d = f.pair_rtt("xmpp-edge", t, "p99"), f.pair_rtt("direct", "tcp", "p99")
        if not e or not d:
            return verdict(None, "")
        need = need_ms / ISSUE_PAIR_P99[("direct", "tcp")]
        separate = f"{e / d:.2f}x direct's ({e:.3f} vs {d:.3f} ms)"
        median = f.pair_ratio(t)
        if median is None:
            return verdict(e / d <= need, f"p99 {separate}, needs <= {need:.2f}x "
                           f"({need_ms} ms against direct's 0.7 ms in the issue)")
        return verdict(median <= need, f"p99 {median:.2f}x direct's, median of the alternating rounds, "
                       f"needs <= {need:.2f}x ({need_ms} ms against direct's 0.7 ms in the issue; "
                       f"the separate runs: {separate})")

    def rtt_t(t, need):
        p = f.pair_rtt("xmpp-edge", t, "p99")
        if p is None:
            return verdict(None, "")
        median = f.pair_median(t, 1)
        rounds = f"; alternating rounds' median {median:.3f} ms" if median is not None else ""
        return verdict(p <= need, f"p99 {p:.3f} ms{rounds}, needs <= {need} ms")

    def rtt_pin(t, need):
        p = f.pair_median(t, 1, "pin")
        if p is None:
            return verdict(None, "")
        return verdict(p <= need, f"p99 {p:.3f} ms, median of the alternating rounds, needs <= {need} ms")

    def rtt_pin_rel(t, need_ms):
        median = f.pair_ratio(t, "pin")
        if median is None:
            return verdict(None, "")
        need = need_ms / ISSUE_PAIR_P99[("direct", "tcp")]
        d = f.pair_median("tcp", 1, "pin")
        return verdict(median <= need, f"p99 {median:.2f}x direct's, median of the alternating rounds "
                       f"(direct's own median {d:.3f} ms), needs <= {need:.2f}x")

    def mem_t(t, need):
        k = f.kib("xmpp-edge", t)
        sc = f.scale(t)
        if k is None:
            return verdict(None, "")
        k9 = sc["kib"] if sc else None
        ok = k <= need and (k9 is not None and k9 <= need)
        return verdict(ok, f"{k:.2f} KiB @{idle_n:,}, {fmt(k9, 2)} KiB @9,000; needs <= {need}")

    def scale_t(t):
        sc = f.scale(t)
        if sc is None:
            return verdict(False, "run failed")
        ok = sc["healthy"] == sc["sessions"] == 9000
        return verdict(ok, f"{sc['healthy']:,} of {sc['sessions']:,} healthy")

    def login_t(t):
        r = f.logins("xmpp-edge", t)
        if r is None or not direct_logins:
            return verdict(None, "")
        x = r / direct_logins
        ramp = f.ramp_logins("xmpp-edge", t)
        dramp = f.ramp_logins("direct", "tcp")
        also = f"; in the {idle_n:,}-session ramp {ratio(ramp, dramp)}" if ramp and dramp else ""
        median = f.churn_ratio(t)
        if median is None:
            return verdict(x >= 0.9, f"churn {x:.2f}x direct ({r:,.0f} vs {direct_logins:,.0f}/s), "
                           f"needs >= 0.90x{also}")
        return verdict(median >= 0.9, f"churn {median:.3f}x direct, median of the alternating rounds, "
                       f"needs >= 0.90x (the separate runs: {x:.2f}x, {r:,.0f} vs {direct_logins:,.0f}/s){also}")

    w(f"| throughput in front of Prosody | {thr('bosh', 0.85)} | {thr('websocket', 0.90)} |")
    w(f"| CPU (xmpp-edge's own) | {cpu_t('bosh', 0.030)} | {cpu_t('websocket', 0.015)} |")
    w(f"| CPU, against node-xmpp-bosh of the same run | {cpu_rel('bosh', 4)} | {cpu_rel('websocket', 6)} |")
    w(f"| latency, one pair | {rtt_t('bosh', 1.2)} | {rtt_t('websocket', 0.9)} |")
    w(f"| latency, against direct of the same run | {rtt_rel('bosh', 1.2)} | {rtt_rel('websocket', 0.9)} |")
    if f.pair_rounds("pin"):
        w(f"| latency, one pair, every process on CPU 0 | {rtt_pin('bosh', 1.2)} | {rtt_pin('websocket', 0.9)} |")
        w(f"| latency on CPU 0, against direct on CPU 0 | {rtt_pin_rel('bosh', 1.2)} "
          f"| {rtt_pin_rel('websocket', 0.9)} |")
    w(f"| memory per idle session | {mem_t('bosh', 12)} | {mem_t('websocket', 6)} |")
    w(f"| scale: 9,000 sessions, all healthy | {scale_t('bosh')} | {scale_t('websocket')} |")
    w(f"| logins: set-up rate | {login_t('bosh')} | {login_t('websocket')} |")
    alone = [f.echo_rate("edge+fake", t) for t in ("bosh", "websocket")]
    fake_rate = f.echo_rate("fake", "tcp")
    w(f"| alone (fake upstream): stanzas/s ceiling | {fmt(alone[0])} msgs/s | {fmt(alone[1])} msgs/s |")
    w("")
    w(f"The fake upstream itself, spoken to directly over c2s, moved {fmt(fake_rate)} msgs/s in the same")
    w("mode, so it is not what bounds the \"alone\" figures; on two cores the generator and the fake")
    w("upstream take a share of the CPU that xmpp-edge would otherwise have.")
    w("")

    reading(f, w, direct_rate)

    # extrapolation
    w("## Towards 100,000+ sessions per node")
    w("")
    for t, name in (("bosh", "BOSH"), ("websocket", "WebSocket")):
        sc = f.scale(t)
        k = sc["kib"] if sc and sc["kib"] else f.kib("xmpp-edge", t)
        cpu = f.cpu("xmpp-edge", t)
        if k is None:
            continue
        gib = k * 100_000 / 1048576
        line = (f"- **{name}**: {k:.1f} KiB per idle session measured gives {gib:.2f} GiB of RSS for 100,000 "
                f"sessions (plus the process's base)")
        if cpu:
            line += (f"; at {cpu:.4f} CPU-s per 1,000 messages, one core moves about "
                     f"{1000 / cpu:,.0f} messages/s through xmpp-edge")
        w(line + ".")
    w("- **Open files**: xmpp-edge holds two sockets per session (the client's and the upstream")
    w("  stream), so 100,000 sessions need about 200,000 descriptors in one process. With the 20,000")
    w("  cap of these machines one process stops near 9,990 sessions; a node for 100,000+ raises")
    w("  `LimitNOFILE` (e.g. 250,000) or runs about eleven processes side by side behind")
    w("  `SO_REUSEPORT` or a load balancer, which costs nothing per session (no state is shared).")
    w("- **Ports**: each upstream connection uses one ephemeral port towards one upstream address, and")
    w("  a Linux source address has about 28,000 of them per destination by default; 100,000")
    w("  sessions need the ephemeral range widened (`net.ipv4.ip_local_port_range`) and several")
    w("  upstream addresses (`upstreams = [...]`) or listening ports at the XMPP server.")
    w("- **CPU while idle**: an idle BOSH session costs one request per `max_wait_secs` (50 s):")
    w("  100,000 sessions make about 2,000 empty polls/s; an idle WebSocket costs one ping per")
    w("  `ping_interval_secs` (30 s). Both are small next to the message rates above.")
    w("- **The XMPP server** behind it needs its own per-session memory (the direct row: Prosody's)")
    w("  and, single-threaded as Prosody is, stays the bottleneck long before xmpp-edge does.")
    w("")
    if images:
        w("## Plots")
        w("")
        for img in images:
            w(f"![{img}]({img})")
            w("")
    errors = []
    for key in order:
        if key[2] not in ("upstream-cpu", "skipped") and not key[2].endswith("-prosody-cpu"):
            errors += problems(key, runs[key], strict=True)
    w("## Errors seen in this run")
    w("")
    if errors:
        for e in errors:
            w(f"- {e}")
    else:
        w("None: every session logged in, stayed healthy, and every message arrived.")
    w("")
    with open(os.path.join(docs, "benchmarks.md"), "w") as out:
        out.write("\n".join(L))
    print("\n".join(L))
    return 0


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("check", "report", "summary"):
        print(__doc__, file=sys.stderr)
        return 2
    if sys.argv[1] == "summary":
        print(summary(sys.argv[2]))
        return 0
    if sys.argv[1] == "check":
        return check(sys.argv[2:])
    return report(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
