"""`python -m tools.phases PHASE ... -- PHASE ...`: run the phases of `make test`,
then print how long each took.

A phase is `NAME=COMMAND`, run in the foreground; `&NAME=COMMAND` starts COMMAND in
the background, niced, its output kept in a log that is printed when it ends, so that
long builds run while earlier test phases do; `wait` waits for every background phase
started so far. A failure before `--` (lint, deps, builds) ends the run there; the
phases after it (the test suites) all run even when one fails, as one pytest session
would. The exit code is the first failure's.

    make test  ->  lint, test deps, &builds, unit, wait, -- integration, real node, e2e
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

BACKGROUND_NICENESS = 10


@dataclass
class Row:
    name: str
    seconds: float
    code: int
    background: bool = False


@dataclass
class Background:
    name: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    started: float = field(default_factory=time.monotonic)


def table(rows: list[Row], wall: float | None = None) -> str:
    width = max(len(row.name) for row in rows)
    lines = [f"{'phase'.ljust(width)}  {'seconds':>8}  result"]
    for row in rows:
        result = "ok" if row.code == 0 else f"failed ({row.code})"
        if row.background:
            result += " (background)"
        lines.append(f"{row.name.ljust(width)}  {row.seconds:8.1f}  {result}")
    # Background phases overlap the others: the total is the wall clock when known.
    total = wall if wall is not None else sum(row.seconds for row in rows)
    lines.append(f"{'total'.ljust(width)}  {total:8.1f}")
    return "\n".join(lines)


def _niced() -> None:
    os.nice(BACKGROUND_NICENESS)


def start(name: str, command: str, logs: Path) -> Background:
    print(f"==> {name} (background, nice {BACKGROUND_NICENESS}): {command}", flush=True)
    log = (logs / f"{name.replace(' ', '-')}.log").open("w+b")
    process = subprocess.Popen(  # noqa: S602 - the Makefile's own command lines
        command, shell=True, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_niced
    )
    return Background(name, process, log)


def finish(job: Background) -> Row:
    code = job.process.wait()
    seconds = time.monotonic() - job.started
    job.log.seek(0)
    output = job.log.read().decode(errors="replace")
    job.log.close()
    print(f"==> {job.name} ended ({'ok' if code == 0 else f'failed ({code})'}):", flush=True)
    sys.stdout.write(output if output.endswith("\n") or not output else output + "\n")
    sys.stdout.flush()
    return Row(job.name, seconds, code, background=True)


def main(argv: list[str]) -> int:
    rows: list[Row] = []
    jobs: list[Background] = []
    required = "--" in argv
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="phases-") as logs:
        for phase in argv:
            if phase == "--":
                required = False
                continue
            if phase == "wait":
                rows += [finish(job) for job in jobs]
                jobs = []
                if required and any(row.code != 0 for row in rows):
                    break
                continue
            name, _, command = phase.partition("=")
            if name.startswith("&"):
                jobs.append(start(name[1:], command, Path(logs)))
                continue
            print(f"==> {name}: {command}", flush=True)
            started = time.monotonic()
            code = subprocess.run(command, shell=True, check=False).returncode  # noqa: S602
            rows.append(Row(name, time.monotonic() - started, code))
            if code != 0 and required:
                break
        # A run that stopped early, or forgot a `wait`, still ends its background work.
        for job in jobs:
            if rows and rows[-1].code != 0 and required:
                job.process.terminate()
            rows.append(finish(job))
    print("\n" + table(rows, wall=time.monotonic() - began), flush=True)
    return next((row.code for row in rows if row.code != 0), 0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
