"""kopf's credentials come from the same client configuration as ours: in a pod that is
the in-cluster config, whose token is "bearer <token>" (lower case), not a kubeconfig's
"Bearer <token>". Sending the scheme twice is a 401 on every request."""

from __future__ import annotations

import pytest

from modelsync.runtime.operator import bearer_token


@pytest.mark.parametrize(
    "value",
    ["Bearer abc.def", "bearer abc.def", "BEARER  abc.def ", "abc.def"],
)
def test_bearer_token_strips_the_scheme_in_any_case(value: str) -> None:
    assert bearer_token(value) == "abc.def"


def test_bearer_token_of_nothing_is_nothing() -> None:
    assert bearer_token("") == ""
