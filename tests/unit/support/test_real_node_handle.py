"""The session's real-node handle: a machine that cannot run a real node fails the
run in CI and skips elsewhere."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from testcluster import node as nodemod
from tests.support.cluster import LocalCluster, RealNode


@pytest.mark.parametrize(
    ("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)]
)
def test_a_machine_without_a_real_node_fails_in_ci_and_skips_elsewhere(
    ci: str, outcome: type[BaseException], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(nodemod, "why_not", lambda binaries: "no cgroups here")
    handle = RealNode(cast(LocalCluster, SimpleNamespace(binaries=None)))
    with pytest.raises(outcome, match="the real node cannot start here: no cgroups here"):
        handle.ensure()
