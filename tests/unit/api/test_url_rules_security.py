"""URLs a tenant writes: the CRDs' rules (as the API server and `modelsync validate` read
them) and the operator's own checks see through other spellings of an address and a
credential in the user name."""

from __future__ import annotations

from typing import Any

import pytest

from modelsync.api import constants as c
from modelsync.api import schemas
from modelsync.api.origins import origin
from modelsync.gitops import commitstatus
from modelsync.gitops.fetch import FetchError, check_url
from tests.support.models import manifest

# 169.254.169.254 (cloud metadata), spelt as inet_aton, browsers and curl read it too.
METADATA = [
    "2852039166",  # one decimal number
    "0xa9fea9fe",  # one hex number
    "0251.0376.0251.0376",  # octal parts
    "0xa9.0xfe.0xa9.0xfe",  # hex parts
    "169.254.43518",  # a short form: the last part fills the rest
    "[::ffff:169.254.169.254]",  # IPv4-mapped
    "[::ffff:a9fe:a9fe]",  # IPv4-mapped, in hex
    "[0:0:0:0:0:ffff:169.254.169.254]",
    "[fE80::1]",  # link-local IPv6, in mixed case
    "[fea0::1]",  # link-local is fe80::/10, not fe80: alone
    "user@169.254.169.254",  # the host after a user name
]


def offline_problems(body: dict[str, Any]) -> list[str]:
    """What the CRD's schema and rules find in `body`, as `modelsync validate` reads them."""
    schema = schemas.load_schemas()[(c.API_VERSION, body["kind"])]
    return [f"{p.field}: {p.message}" for p in schemas.problems(schema, body)]


def md_problems(uri: str) -> list[str]:
    body = manifest("iris")
    body["spec"]["model"]["uri"] = uri
    return offline_problems(body)


def ms_problems(url: str) -> list[str]:
    return offline_problems(
        {
            "apiVersion": c.API_VERSION,
            "kind": c.MODELSYNC_KIND,
            "metadata": {"name": "prod", "namespace": "team"},
            "spec": {"repo": {"url": url}},
        }
    )


@pytest.mark.parametrize("host", METADATA)
def test_security_link_local_in_any_spelling_is_refused(host: str) -> None:
    """The CRD's rule on spec.model.uri, and the operator's origins (analysis endpoints,
    receivers, git host APIs, remote clusters) and repository URLs."""
    found = md_problems(f"https://{host}/models/iris")
    assert any("spec.model.uri" in p for p in found), found
    assert origin(f"https://{host}/") is None
    with pytest.raises(commitstatus.RefusedError):
        commitstatus.api_base({"provider": "gitea"}, f"https://{host}/acme/models.git", ())
    with pytest.raises(FetchError):
        check_url(f"https://{host}/acme/models.git", False)


@pytest.mark.parametrize(
    "url",
    [
        "https://ghp_0123456789abcdefghijklmnopqrstuvwxyz@github.com/acme/models.git",
        "http://glpat-0123456789@198.18.0.9:3000/acme/models.git",
        "https://x-access-token@github.com/acme/models.git",
        "https://:s3cret@github.com/acme/models.git",
    ],
)
def test_security_no_credential_in_a_repository_url_not_even_as_user_name(url: str) -> None:
    found = ms_problems(url)
    assert any("must not carry credentials" in p for p in found), found
    with pytest.raises(FetchError, match="credentials"):
        check_url(url, False)


def test_url_rules_keep_what_is_ordinary() -> None:
    for uri in (
        "https://models.example.com/iris",
        "https://198.18.0.9:8443/iris",
        "https://[2001:db8::1]/iris",
        "https://10x.example/iris",
        "https://0.example/iris",
        "s3://models/iris",
    ):
        assert md_problems(uri) == [], uri
    for url in (
        "https://github.com/acme/models.git",
        "ssh://git@github.com/acme/models.git",
        "git@github.com:acme/models.git",
        "http://198.18.0.9:3000/acme/models.git",
    ):
        assert ms_problems(url) == [], url
        check_url(url, False)
