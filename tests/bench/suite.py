"""The benchmark suite of `make bench`: scale, latency and memory of GitOps with
modelsync on this machine's local cluster, against the issue's targets and, side by
side, against Flux (source-controller + kustomize-controller built from Go modules)
applying the same models as plain manifests.

Prints a table and writes the same figures to bench-results.json.

    BENCH_N=100,1000 BENCH_COMMITS=20 BENCH_FLUX=1 python -m tests.bench.suite

Each N runs on a fresh cluster; the latency figures (resync, commit -> applied,
drift, idle poll) are taken on the largest N; rollbacks on a cluster of their own.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from modelsync.runtime.settings import OperatorSettings
from tests.bench import gitops, rollback
from tests.bench.common import fresh_cluster

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench-results.json"

Results = dict[str, Any]


def sizes() -> list[int]:
    text = os.environ.get("BENCH_N", "100,1000")
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise SystemExit(f"BENCH_N={text!r}: expected model counts, e.g. 100,1000") from None
    if not values or min(values) < 1:
        raise SystemExit(f"BENCH_N={text!r}: expected model counts above 0")
    return values


def main() -> int:
    counts = sizes()
    commits = int(os.environ.get("BENCH_COMMITS", "20"))
    with_flux = os.environ.get("BENCH_FLUX", "1") not in {"0", "false", "no"}
    results: Results = {"machine": machine(), "modelsync": {}, "flux": {}}

    for n in counts:
        deep = n == counts[-1]
        print(f"[bench] modelsync, {n} models{' (and latencies)' if deep else ''}", flush=True)
        with fresh_cluster(n) as cluster, tempfile.TemporaryDirectory() as tmp:
            results["modelsync"][str(n)] = gitops.measure(
                cluster, Path(tmp), n, commits=commits if deep else 0, latencies=deep
            )
        save(results)
    print("[bench] rollbacks", flush=True)
    with fresh_cluster() as cluster:
        results["rollback"] = rollback.measure(cluster, rounds=10, models=0)
    save(results)
    if with_flux:
        for n in counts:
            print(f"[bench] Flux, {n} models", flush=True)
            results["flux"][str(n)] = flux(n)
            save(results)

    print_table(results, counts)
    print(f"\nfigures written to {RESULTS}")
    return 0


def flux(n: int) -> Results:
    """Flux side by side, at our operator's API rate limit (the same budget for both);
    what stopped it, if it could not run."""
    try:
        from tests.bench.flux.run import run_flux
    except ImportError as error:
        return {"error": f"Flux benchmark not available: {error}"}
    try:
        figures = run_flux(
            n, kube_qps=OperatorSettings.kube_qps, kube_burst=OperatorSettings.kube_burst
        )
    except (RuntimeError, OSError, SystemExit) as error:
        return {"error": str(error)}
    rss = (
        figures["source_controller_peak_rss_bytes"] + figures["kustomize_controller_peak_rss_bytes"]
    )
    return {
        **figures,
        "applied_s": figures["applied_seconds"],
        # Every Deployment available: Flux reports no per-object Ready of its own.
        "ready_s": figures["ready_seconds"],
        "deployments_available_s": figures["ready_seconds"],
        "sync_ready_s": figures["kustomization_ready_seconds"],
        "bump_sync_ready_s": figures["bump_ready_seconds"],
        "resync_s": figures["resync_seconds"],
        "rss_mib": rss / 2**20,  # both controllers: together they do what our one process does
    }


def machine() -> Results:
    memory = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = int(line.split()[1]) * 1024
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory / 2**30, 1),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def save(results: Results) -> None:
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


# ------------------------------------------------------------------ the table

Row = tuple[str, str, str, str, str]  # figure, ours, target, Flux, ours / Flux


def print_table(results: Results, counts: list[int]) -> None:
    rows: list[Row] = []
    ours, theirs = results["modelsync"], results["flux"]
    for n in counts:
        mine, flux_n = ours.get(str(n), {}), theirs.get(str(n), {})
        target_applied = "≤ 30 s" if n == 1000 else ""
        target_ready = "≤ 90 s" if n == 1000 else ""
        target_rss = {1000: "≤ 150 MiB", 10000: "≤ 500 MiB"}.get(n, "")
        rows.append(
            _row(f"{n} models: all applied", mine, flux_n, "applied_s", "s", target_applied)
        )
        rows.append(_row(f"{n} models: all Ready", mine, flux_n, "ready_s", "s", target_ready))
        rows.extend(_waits_and_writes(n, mine, flux_n))
        rows.append(
            _row(f"{n} models: operator peak RSS", mine, flux_n, "rss_mib", "MiB", target_rss)
        )
        requests = mine.get("api_requests", {})
        if requests:
            text = ", ".join(f"{verb} {count:.0f}" for verb, count in sorted(requests.items()))
            rows.append((f"{n} models: API requests", text, "", "", ""))
        if "error" in flux_n:
            rows.append((f"{n} models: Flux", "", "", flux_n["error"][:60], ""))
    deep = ours.get(str(counts[-1]), {})
    flux_deep = theirs.get(str(counts[-1]), {})
    if "resync_s" in deep:
        rows.append(
            _row("resync, nothing changed", deep, flux_deep, "resync_s", "s", "0 writes, ≤ 2 s")
        )
        rows.append(
            (
                "resync: API writes / reads",
                f"{deep['resync_writes']:.0f} / {deep['resync_reads']:.0f}",
                "0 writes",
                "",
                "",
            )
        )
    for key, label, target in (
        ("webhook", "webhook commit -> applied", "p50 ≤ 1 s, p95 ≤ 2 s"),
        ("polling", "polling commit -> applied", ""),
        ("drift", "drift reverted", "p95 ≤ 2 s"),
    ):
        if key + "_p50_s" in deep:
            rows.append(
                (
                    f"{label} ({deep[key + '_count']})",
                    f"p50 {deep[key + '_p50_s']:.2f} s, p95 {deep[key + '_p95_s']:.2f} s",
                    target,
                    "",
                    "",
                )
            )
    if "idle_poll_cpu_ms" in deep:
        rows.append(
            (
                "one idle poll",
                f"{deep['idle_poll_git_requests']:.1f} git requests, "
                f"{deep['idle_poll_cpu_ms']:.0f} ms CPU, {deep['idle_poll_wall_ms']:.0f} ms",
                "",
                "",
                "",
            )
        )
    back = results.get("rollback") or {}
    if back:
        rows.append(
            (
                f"failed rollout -> rolled back ({back['rounds']})",
                f"p50 {back['patch_to_rolled_back_p50_s']:.1f} s after the change "
                f"(deadline {back['deadline_s']} s); {back['detect_to_rolled_back_p50_ms']:.0f} ms "
                "after detection",
                f"≤ deadline + 5 s = {back['deadline_s'] + 5} s",
                "",
                "",
            )
        )
    widths = [max(len(row[i]) for row in [_HEADER, *rows]) for i in range(5)]
    for row in [_HEADER, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


_HEADER: Row = ("figure", "modelsync", "target", "Flux", "modelsync / Flux")


def _waits_and_writes(n: int, mine: Results, flux_n: Results) -> list[Row]:
    """Ready as each side reports it (a ModelSync, a Kustomization with wait: true), and
    the writes per model, counted from the API server's audit log."""
    rows: list[Row] = [
        _row(
            f"{n} models: Deployments available", mine, flux_n, "deployments_available_s", "s", ""
        ),
        _row(f"{n} models: ModelSync / Kustomization Ready", mine, flux_n, "sync_ready_s", "s", ""),
    ]
    for key, what, target in (("cold", "cold", "≤ 4"), ("bump", "per bump", "≤ 3")):
        ours_w = (mine.get(f"writes_{key}") or {}).get("writes_per_model")
        theirs_w = (flux_n.get(f"writes_{key}") or {}).get("writes_per_model")
        if ours_w is not None or theirs_w is not None:
            rows.append(
                (
                    f"{n} models: writes per model, {what}",
                    "" if ours_w is None else f"{ours_w:.2f}",
                    target,
                    "" if theirs_w is None else f"{theirs_w:.2f}",
                    f"{ours_w / theirs_w:.2f}" if ours_w and theirs_w else "",
                )
            )
    bumped = mine.get("bump_models", flux_n.get("bump_models", ""))
    rows.append(
        _row(f"{n} models: bump of {bumped} Ready", mine, flux_n, "bump_sync_ready_s", "s", "")
    )
    return rows


def _row(label: str, mine: Results, flux_n: Results, key: str, unit: str, target: str) -> Row:
    ours = mine.get(key)
    theirs = flux_n.get(key)
    ratio = f"{ours / theirs:.2f}" if ours and theirs else ""
    return (
        label,
        _fmt(ours, unit),
        target,
        _fmt(theirs, unit),
        ratio,
    )


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    return f"{value:.0f} {unit}" if unit == "MiB" else f"{value:.1f} {unit}"


if __name__ == "__main__":
    raise SystemExit(main())
