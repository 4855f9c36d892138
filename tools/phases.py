"""`python -m tools.phases NAME=COMMAND ... -- NAME=COMMAND ...`: run the phases of
`make test` in order, then print how long each took. A failure before `--` (lint,
deps, build) ends the run there; the phases after it (the test suites) all run even
when one fails, as one pytest session would. The exit code is the first failure's.

    make test  ->  lint, test deps, build, unit, integration, real node, e2e
"""

from __future__ import annotations

import subprocess
import sys
import time


def table(rows: list[tuple[str, float, int]]) -> str:
    width = max(len(name) for name, _, _ in rows)
    lines = [f"{'phase'.ljust(width)}  {'seconds':>8}  result"]
    for name, seconds, code in rows:
        result = "ok" if code == 0 else f"failed ({code})"
        lines.append(f"{name.ljust(width)}  {seconds:8.1f}  {result}")
    total = sum(seconds for _, seconds, _ in rows)
    lines.append(f"{'total'.ljust(width)}  {total:8.1f}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    rows: list[tuple[str, float, int]] = []
    required = "--" in argv
    for phase in argv:
        if phase == "--":
            required = False
            continue
        name, _, command = phase.partition("=")
        print(f"==> {name}: {command}", flush=True)
        started = time.monotonic()
        code = subprocess.run(command, shell=True, check=False).returncode  # noqa: S602
        rows.append((name, time.monotonic() - started, code))
        if code != 0 and required:
            break
    print("\n" + table(rows), flush=True)
    return next((code for _, _, code in rows if code != 0), 0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
