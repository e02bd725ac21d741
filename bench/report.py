"""Prints the benchmark table of one bench/run.sh results directory.

python3 bench/report.py RESULTS_DIR

Reads RESULTS_DIR/manifest.tsv (target, baseline, concurrency, round, raw JSON file per
line), meta.txt and notes.txt. For every target and concurrency it prints the medians over
the rounds, and ratios against the baseline measured in the same run: throughput as a
percentage of the baseline's and p50/p99 overhead as a difference in microseconds. A ratio
is taken per round against the baseline point measured just before it, and the median of
those is shown, so slow drift of the machine cancels out. Ends with the pass-through goals
for bastion in front of the echo upstream.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

# Goals from the issue, for bastion in pass-through configuration (echo upstream).
GOAL_P50_OVERHEAD_US = 150
GOAL_THROUGHPUT_PCT = 85.0

# target -> (shown name, upstream); also the row order within a group.
LABELS = {
    "direct": ("direct", "echo"),
    "bastion": ("bastion", "echo"),
    "nginx": ("nginx", "echo"),
    "contextforge": ("ContextForge", "echo"),
    "fixture-direct": ("direct", "fixture"),
    "fixture-bastion": ("bastion", "fixture"),
}


def ok(d: dict) -> bool:
    return "failed" not in d and bool(d.get("requests"))


def load(results: Path) -> dict[tuple[str, int], dict]:
    """(target, concurrency) -> {"base": name or None, "rounds": {round: data}}."""
    points: dict[tuple[str, int], dict] = {}
    for line in (results / "manifest.tsv").read_text().splitlines():
        if not line.strip():
            continue
        target, base, conc, rnd, path = line.split("\t")
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            data = {"failed": f"unreadable result: {e}"}
        p = points.setdefault((target, int(conc)), {"base": None if base == "-" else base, "rounds": {}})
        p["rounds"][int(rnd)] = data
    return points


def summary(p: dict) -> dict | None:
    """Medians over the successful rounds of one point, or None if there are none."""
    good = [d for d in p["rounds"].values() if ok(d)]
    if not good:
        return None
    rps = [d["throughput_rps"] for d in good]
    med = statistics.median(rps)
    return {
        "rounds": len(good),
        "window": sum(d["measured_secs"] for d in good),
        "requests": sum(d["requests"] for d in good),
        "errors": sum(d["errors"] for d in p["rounds"].values() if "failed" not in d),
        "rps": med,
        "spread": 100.0 * (max(rps) - min(rps)) / med if len(rps) > 1 and med else None,
        "p50": statistics.median(d["latency_us"]["p50"] for d in good),
        "p99": statistics.median(d["latency_us"]["p99"] for d in good),
    }


def ratios(p: dict, base: dict | None) -> tuple[float, float, float] | None:
    """(throughput % of base, p50 +µs, p99 +µs): per-round pairs when both were measured
    in the same rounds, otherwise against the baseline's medians."""
    if base is None:
        return None
    pairs = [
        (d, base["rounds"][r])
        for r, d in p["rounds"].items()
        if ok(d) and r in base["rounds"] and ok(base["rounds"][r])
    ]
    if pairs and set(p["rounds"]) == set(base["rounds"]):
        return (
            statistics.median(100.0 * d["throughput_rps"] / b["throughput_rps"] for d, b in pairs),
            statistics.median(d["latency_us"]["p50"] - b["latency_us"]["p50"] for d, b in pairs),
            statistics.median(d["latency_us"]["p99"] - b["latency_us"]["p99"] for d, b in pairs),
        )
    s, b = summary(p), summary(base)
    if s is None or b is None:
        return None
    return 100.0 * s["rps"] / b["rps"], s["p50"] - b["p50"], s["p99"] - b["p99"]


def us(v: float) -> str:
    return f"{v:.0f}"


def main() -> int:
    results = Path(sys.argv[1])
    points = load(results)
    out: list[str] = []
    meta = results / "meta.txt"
    if meta.exists():
        out += meta.read_text().rstrip().splitlines()
        out.append("")

    head = (
        f"{'target':<13} {'upstream':<8} {'conc':>4} {'window s':>8} {'requests':>9} {'req/s':>9} {'±%':>4}"
        f" {'p50 µs':>8} {'p99 µs':>8} {'errors':>6} │ {'req/s % of direct':>17} {'p50 +µs':>8} {'p99 +µs':>8}"
    )
    out.append(head)
    out.append("─" * len(head))
    order = list(LABELS)

    def sort_key(key: tuple[str, int]) -> tuple:
        target, conc = key
        upstream = LABELS.get(target, (target, "~"))[1]
        return (upstream, conc, order.index(target) if target in order else len(order))

    last_group = None
    errors_seen = []
    goal_lines = []
    for key in sorted(points, key=sort_key):
        target, conc = key
        p = points[key]
        name, upstream = LABELS.get(target, (target, "?"))
        if last_group is not None and (upstream, conc) != last_group:
            out.append("")
        last_group = (upstream, conc)
        for r, d in sorted(p["rounds"].items()):
            if d.get("errors") and d.get("first_error"):
                errors_seen.append(f"{name} → {upstream}, concurrency {conc}, round {r}: {d['errors']} errors, first: {d['first_error'][:200]}")
            if "failed" in d:
                errors_seen.append(f"{name} → {upstream}, concurrency {conc}, round {r}: bench-load failed: {d['failed'][:200]}")
        s = summary(p)
        if s is None:
            out.append(f"{name:<13} {upstream:<8} {conc:>4}   no successful measurement (see below)")
            continue
        spread = f"{s['spread']:>4.0f}" if s["spread"] is not None else f"{'':>4}"
        line = (
            f"{name:<13} {upstream:<8} {conc:>4} {s['window']:>8.1f} {s['requests']:>9} {s['rps']:>9.1f} {spread}"
            f" {us(s['p50']):>8} {us(s['p99']):>8} {s['errors']:>6} │"
        )
        base = points.get((p["base"], conc)) if p["base"] else None
        rat = ratios(p, base)
        if p["base"] is None:
            line += f" {'(baseline)':>17}"
        elif rat is None:
            line += f" {'(no baseline)':>17}"
        else:
            pct, dp50, dp99 = rat
            digits = 2 if pct < 1 else 1
            line += f" {pct:>16.{digits}f}% {dp50:>+8.0f} {dp99:>+8.0f}"
            if target == "bastion":
                goal_lines.append((conc, pct, dp50, ratios(points.get(("nginx", conc), {"rounds": {}}), base)))
        out.append(line)

    out.append("")
    out.append("Medians over the rounds. p50/p99: per-call latency as the client saw it. \"+µs\": difference to")
    out.append("the same upstream reached directly at the same concurrency; \"% of direct\": throughput relative")
    out.append("to it (both per round against the direct point measured just before, then the median).")
    out.append("\"±%\": spread of req/s between rounds (max − min) / median. \"window s\": measured time, all rounds.")

    if goal_lines:
        out.append("")
        out.append(
            f"Goal, bastion pass-through (echo upstream): p50 overhead ≤ {GOAL_P50_OVERHEAD_US} µs"
            f" and throughput ≥ {GOAL_THROUGHPUT_PCT:.0f}% of direct"
        )
        for conc, pct, dp50, nginx in goal_lines:
            line = (
                f"  concurrency {conc:>2}: p50 overhead {dp50:>+6.0f} µs "
                + ("meets" if dp50 <= GOAL_P50_OVERHEAD_US else f"misses by {dp50 - GOAL_P50_OVERHEAD_US:.0f} µs")
                + f"; throughput {pct:5.1f}% of direct "
                + ("meets" if pct >= GOAL_THROUGHPUT_PCT else f"misses by {GOAL_THROUGHPUT_PCT - pct:.1f} points")
            )
            if nginx is not None:
                # What a minimal proxy hop costs on this machine, for scale.
                line += f" (nginx: {nginx[1]:+.0f} µs, {nginx[0]:.1f}%)"
            out.append(line)

    notes = results / "notes.txt"
    if notes.exists() and notes.read_text().strip():
        out.append("")
        out.append("Notes:")
        out += ["  " + n for n in notes.read_text().strip().splitlines()]
    if errors_seen:
        out.append("")
        out.append("Errors:")
        out += ["  " + e for e in errors_seen]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
