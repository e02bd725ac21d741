#!/usr/bin/env python3
"""Summarise MCP conformance suite results as a per-scenario table.

The suite writes one directory per scenario, `server-<scenario>-<timestamp>/checks.json`,
holding a list of checks whose `status` is SUCCESS, FAILURE, WARNING, INFO or SKIPPED.
A scenario passes when none of its checks is a FAILURE (the suite's own rule).

    conformance_table.py DIR
        Print scenario -> pass/fail with SUCCESS/FAILURE/WARNING counts. Exit 0.

    conformance_table.py --direct DIR1 --via DIR2
        Side-by-side table of a direct run (fixture alone) and a run through the
        gateway. Exit 1 if any scenario passes in DIR1 but not in DIR2 (including
        a scenario missing from DIR2), else 0.

If a directory holds several runs of one scenario, the newest one counts.
Standard library only, so any python3 can run it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

# The suite's timestamp is new Date().toISOString() with ':' and '.' replaced by '-'.
RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z)$")


@dataclass
class ScenarioResult:
    scenario: str
    timestamp: str
    success: int = 0
    failure: int = 0
    warning: int = 0
    other: int = 0  # INFO, SKIPPED
    error: str | None = None  # checks.json unreadable

    @property
    def passed(self) -> bool:
        return self.error is None and self.failure == 0

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "FAIL"

    @property
    def counts(self) -> str:
        return f"{self.success} ok / {self.failure} fail / {self.warning} warn"


def load(directory: Path, newer_than: float | None = None) -> dict[str, ScenarioResult]:
    """Newest result per scenario, in the order the suite ran them."""
    results: dict[str, ScenarioResult] = {}
    if not directory.is_dir():
        raise SystemExit(f"conformance_table: {directory} is not a directory")
    for entry in directory.iterdir():
        match = RESULT_DIR.match(entry.name)
        checks_file = entry / "checks.json"
        if match is None or not checks_file.is_file():
            continue
        if newer_than is not None and checks_file.stat().st_mtime < newer_than:
            continue
        result = ScenarioResult(match["scenario"], match["ts"])
        previous = results.get(result.scenario)
        if previous is not None and previous.timestamp > result.timestamp:
            continue
        try:
            checks = json.loads(checks_file.read_text())
        except (OSError, ValueError) as exc:
            result.error = f"unreadable checks.json: {exc}"
        else:
            for check in checks:
                status = check.get("status") if isinstance(check, dict) else None
                if status == "SUCCESS":
                    result.success += 1
                elif status == "FAILURE":
                    result.failure += 1
                elif status == "WARNING":
                    result.warning += 1
                else:
                    result.other += 1
        results[result.scenario] = result
    return dict(sorted(results.items(), key=lambda item: item[1].timestamp))


def render(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def single(directory: Path, newer_than: float | None) -> int:
    results = load(directory, newer_than)
    if not results:
        print(f"conformance_table: no results in {directory}", file=sys.stderr)
        return 1
    rows = [["scenario", "result", "SUCCESS", "FAILURE", "WARNING"]]
    for r in results.values():
        rows.append([r.scenario, r.verdict, str(r.success), str(r.failure), str(r.warning)])
    print(render(rows))
    passed = sum(r.passed for r in results.values())
    print(f"\n{passed}/{len(results)} scenarios pass")
    for r in results.values():
        if r.error:
            print(f"{r.scenario}: {r.error}")
    return 0


def compare(direct_dir: Path, via_dir: Path) -> int:
    direct = load(direct_dir)
    via = load(via_dir)
    if not direct:
        print(f"conformance_table: no results in {direct_dir}", file=sys.stderr)
        return 1
    rows = [["scenario", "direct", "via gateway", "verdict"]]
    regressions = []
    # Direct order first, then anything only the gateway run produced.
    for name in [*direct, *(n for n in via if n not in direct)]:
        d, v = direct.get(name), via.get(name)
        if d is not None and d.passed and (v is None or not v.passed):
            verdict = "REGRESSION"
            regressions.append(name)
        elif d is not None and not d.passed and v is not None and v.passed:
            verdict = "passes only via gateway"
        elif d is None:
            verdict = "not in direct run"
        elif not d.passed:
            verdict = "fails in both"
        else:
            verdict = "ok"
        rows.append(
            [
                name,
                f"{d.verdict} ({d.counts})" if d else "missing",
                f"{v.verdict} ({v.counts})" if v else "missing",
                verdict,
            ]
        )
    print(render(rows))
    if regressions:
        print(f"\n{len(regressions)} scenario(s) pass directly but not via the gateway: {', '.join(regressions)}")
        return 1
    print("\nno regressions: every scenario that passes directly also passes via the gateway")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", type=Path, help="results directory (single-table mode)")
    parser.add_argument("--direct", type=Path, help="results of the direct run (comparison mode)")
    parser.add_argument("--via", type=Path, help="results of the run through the gateway (comparison mode)")
    parser.add_argument(
        "--newer-than",
        type=Path,
        metavar="FILE",
        help="single-table mode: ignore results older than FILE (used by run_conformance.sh)",
    )
    args = parser.parse_args(argv)

    if args.direct or args.via:
        if not (args.direct and args.via) or args.dir:
            parser.error("comparison mode takes exactly --direct DIR1 --via DIR2")
        return compare(args.direct, args.via)
    if args.dir is None:
        parser.error("give a results directory, or --direct DIR1 --via DIR2")
    newer_than = os.stat(args.newer_than).st_mtime if args.newer_than else None
    return single(args.dir, newer_than)


if __name__ == "__main__":
    sys.exit(main())
