"""modelsync and Flux on the same N models, one after the other in one run, each on a
fresh cluster with the same kwok delays and API rate limit: all applied, all Ready
(each side as it reports it: a ModelSync, a Kustomization with `wait: true`), a
version bump, and the writes per model from the API server's audit log. The scale
rows of `make bench` without its latencies, rollbacks and images (minutes, not an
hour); the machine's load average is printed with them, since it moves them.

    python -m tests.bench.versus [--models 1000] [--no-flux]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from tests.bench import gitops, suite
from tests.bench.common import fresh_cluster, update_results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--no-flux", action="store_true", help="modelsync only")
    args = parser.parse_args()
    n = args.models
    results: suite.Results = {"machine": suite.machine(), "modelsync": {}, "flux": {}}
    results["machine"]["load_before"] = os.getloadavg()
    print(f"[versus] modelsync, {n} models", flush=True)
    with fresh_cluster(n) as cluster, tempfile.TemporaryDirectory() as tmp:
        results["modelsync"][str(n)] = gitops.measure(cluster, Path(tmp), n, latencies=False)
    results["machine"]["load_between"] = os.getloadavg()
    if not args.no_flux:
        print(f"[versus] Flux, {n} models", flush=True)
        results["flux"][str(n)] = suite.flux(n)
    results["machine"]["load_after"] = os.getloadavg()
    suite.print_table(results, [n])
    loads = ", ".join(
        f"{when} {' '.join(f'{x:.2f}' for x in results['machine'][f'load_{when}'])}"
        for when in ("before", "between", "after")
    )
    print(f"load average (1, 5, 15 min): {loads}")
    update_results(f"versus_{n}", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
