"""Write-back, bounded (issue 29 item 3): finding a model's file at a revision reads what
the sync's loader would, with its limits; it parsed every file under `path` with
pure-Python YAML and no size limit (0.5 MiB of sample body: +170 MiB)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.gitserver import WorkRepo
from tests.support.paths import REPO
from tests.support.syncs import model_yaml

MIB = 1 << 20
FIND = """
import sys
from pathlib import Path
import git
from modelsync.gitops.writeback import find_model_file

def hwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

repo = git.Repo(sys.argv[1])
before = hwm()
print(find_model_file(repo, "HEAD", "iris", "models"), hwm() - before)
"""


def test_security_write_back_reads_no_sample_body_and_no_file_over_the_limit(
    tmp_path: Path,
) -> None:
    repo = WorkRepo(tmp_path, "models")
    row = "[" + ",".join(["0.5"] * 30) + "]"
    body = '{"inputs": [' + ",".join([row] * ((4 * MIB) // (len(row) + 1))) + "]}\n"
    repo.write("models/a-big.body.json", body)  # sorted first: read first, if at all
    repo.write("models/b-huge.json", body)  # over the per-file limit: the loader skips it
    repo.write("models/c-other.yaml", model_yaml("other"))
    repo.write("models/iris.yaml", model_yaml("iris"))
    repo.commit("iris beside a 4 MiB sample body")
    done = subprocess.run(
        [sys.executable, "-c", FIND, str(repo.work)],
        env={**os.environ, "PYTHONPATH": str(REPO / "controller")},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    found, growth = done.stdout.split()
    assert found == "models/iris.yaml"
    assert int(growth) < 16 * MIB, f"finding the file grew the peak by {int(growth) / MIB:.0f} MiB"
