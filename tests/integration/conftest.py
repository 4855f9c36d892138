"""Every integration test runs against the local cluster: mark them so
`pytest -m "not cluster"` (or `make unit`) leaves them out."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.cluster)
