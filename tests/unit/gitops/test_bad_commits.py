"""One corpus of commits nobody here wrote, three readers that must agree.

Each `tests/fixtures/bad-commits/<case>/` is a revision as a hurried engineer, a Helm
user or a Kustomize user might commit it, and `expected.txt` the exact lines
(`file:line: object: message`) it must be reported with. This file checks the loader
and validation functions and `modelsync validate --output json`; the operator's own
report of the same revisions is checked live in tests/integration/test_bad_commits.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from modelsync.gitops import samples
from modelsync.gitops.render import RenderSettings, render
from modelsync.gitops.validate import content_errors, offline_scope, policy_errors, policy_for
from tests.support.paths import FIXTURES, REPO

CORPUS = FIXTURES / "bad-commits"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
READINESS_CASES = ["readiness-path-format-spec", "readiness-path-braces"]
# The address space `modelsync validate` gets below: a 900 MB string does not fit.
VALIDATE_MEMORY_BYTES = 1 << 30


def expected(case: str) -> list[str]:
    return (CORPUS / case / "expected.txt").read_text().splitlines()


def test_the_corpus_is_large_enough_and_every_case_fails() -> None:
    assert len(CASES) >= 25
    for case in CASES:
        assert expected(case), f"{case}: an empty expected.txt would pass anything"


@pytest.mark.parametrize("case", CASES)
def test_bad_commit_loader_and_validation(case: str) -> None:
    root = CORPUS / case
    # As the operator reads a revision (rendering refuses a bad kustomization before
    # kustomize runs: no binary needed here).
    loaded = render(root, "", None, RenderSettings())
    policy, _ = policy_for("team", None)
    errors = loaded.errors + samples.inline(loaded.objects, root, loaded.reader(root))
    errors += content_errors(loaded.objects, loaded.reader(root))
    errors += policy_errors(loaded.objects, policy, offline_scope)
    lines = sorted((str(e) for e in errors), key=lambda s: (s.split(":")[0], int(s.split(":")[1])))
    assert lines == expected(case)


def validate_json(case: str, *prefix: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "modelsync", "validate", ".", "--output", "json"],
        cwd=CORPUS / case,
        env={**os.environ, "PYTHONPATH": str(REPO / "controller")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def reported(result: subprocess.CompletedProcess[str]) -> list[str]:
    report = json.loads(result.stdout)
    return [
        f"{e['file']}:{e['line']}: {e['object'] + ': ' if e['object'] else ''}{e['message']}"
        for e in report["errors"]
    ]


@pytest.mark.parametrize("case", CASES)
def test_bad_commit_validate_cli_json(case: str) -> None:
    result = validate_json(case)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert reported(result) == expected(case)


@pytest.mark.parametrize("case", READINESS_CASES)
def test_security_readiness_path_bounded(case: str) -> None:
    """`/{model:>900000000}` built a 900 MB string in the offline check (the operator's
    too: the live test reads this corpus), `/{x}` and `/x{` raised: refused at the field
    with the CRD's pattern, by `modelsync validate` in an address space of 1 GiB."""
    result = validate_json(case, "prlimit", f"--as={VALIDATE_MEMORY_BYTES}", "--")
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 1, result.stderr
    assert reported(result) == expected(case)
    assert all("readinessPath" in line for line in expected(case))
