"""The tests' own servers and fixtures, the demo and the Makefile send traffic only to
loopback and 198.18.0.0/15, as the harness does (testcluster/tests/test_addresses.py)."""

from __future__ import annotations

from testcluster.addresses import files_naming_private_addresses
from tests.support.paths import REPO

# What starts servers and the operator for tests beside the harness.
SOURCES = ("tests/support/*.py", "tests/**/conftest.py", "tools/demo.py", "Makefile")


def test_no_test_support_file_names_a_private_address() -> None:
    files = sorted({path for pattern in SOURCES for path in REPO.glob(pattern)})
    assert any(path.name == "gitserver.py" for path in files)
    assert any(path.name == "conftest.py" for path in files)
    offending = files_naming_private_addresses(files, REPO)
    assert not offending, (
        "tests must use loopback or 198.18.0.0/15 (testcluster/addresses.py), "
        "never 10/8, 172.16/12 or 192.168/16:\n" + "\n".join(offending)
    )
