"""The chart refuses disk settings its volumes cannot hold: a git cache budget over the
cache volume's sizeLimit (the kubelet would evict the pod before the operator trims),
or under what one sync needs at the largest revision it admits (no sync could run).
`helm template` fails naming both values and the fix; JSON Schema cannot compare
quantities, so the check is a `fail` in the templates."""

from __future__ import annotations

import pytest

from tests.e2e.test_helm import CHART, helm
from tests.support.cluster import LocalCluster

MIB = 1 << 20


@pytest.mark.parametrize(
    ("values", "words"),
    [
        # The budget (3 GiB) over the volume (2Gi).
        (["volumes.gitCacheSizeLimit=2Gi"], "over volumes.gitCacheSizeLimit"),
        (["operator.gitCacheMaxBytes=5368709120"], "over volumes.gitCacheSizeLimit"),
        # One sync at 1 GiB revisions needs more than the budget.
        (["operator.maxRevisionBytes=1073741824"], "too small for operator.maxRevisionBytes"),
        (["operator.gitCacheMaxBytes=104857600"], "too small for operator.maxRevisionBytes"),
    ],
)
def test_security_chart_refuses_disk_settings_its_volumes_cannot_hold(
    local_cluster: LocalCluster, values: list[str], words: str
) -> None:
    sets = [arg for value in values for arg in ("--set", value)]
    refused = helm(local_cluster, "template", "m", str(CHART), *sets, check=False)
    assert refused.returncode != 0
    assert words in refused.stderr, refused.stderr
    assert "operator.gitCacheMaxBytes" in refused.stderr, refused.stderr


def test_security_chart_passes_a_disk_budget_that_fits_its_volume(
    local_cluster: LocalCluster,
) -> None:
    rendered = helm(local_cluster, "template", "m", str(CHART)).stdout
    assert f"--git-cache-max-bytes={3 << 30}" in rendered
    small = helm(
        local_cluster,
        "template",
        "m",
        str(CHART),
        *("--set", "volumes.gitCacheSizeLimit=64Mi"),
        *("--set", f"operator.gitCacheMaxBytes={48 * MIB}"),
        *("--set", f"operator.maxRevisionBytes={MIB}"),
    ).stdout
    assert f"--git-cache-max-bytes={48 * MIB}" in small
