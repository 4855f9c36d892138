"""Where things are in the checkout, for tests wherever they sit in tests/."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
# Shared fixtures: the bad-commit corpus, captured API answers, example manifests.
FIXTURES = TESTS / "fixtures"
CRDS = REPO / "crds"
