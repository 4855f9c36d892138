"""The tests' object store is a real S3 endpoint: it serves what was uploaded, to the
right credentials only, and says 404 for what is not there."""

from __future__ import annotations

import pytest

from testcluster.objectstore import ObjectStore


@pytest.fixture(scope="module")
def bucket(objectstore: ObjectStore) -> str:
    objectstore.create_bucket("models")
    objectstore.put("models", "iris/1/model.joblib", b"\x80\x04 not really a model")
    return "models"


def test_objectstore_serves_an_uploaded_object(objectstore: ObjectStore, bucket: str) -> None:
    status, body = objectstore.request("GET", f"/{bucket}/iris/1/model.joblib")
    assert (status, body) == (200, b"\x80\x04 not really a model")


def test_objectstore_refuses_a_wrong_secret(objectstore: ObjectStore, bucket: str) -> None:
    status, body = objectstore.request(
        "GET", f"/{bucket}/iris/1/model.joblib", secret_key="not-" + objectstore.secret_key
    )
    assert status == 403
    assert b"SignatureDoesNotMatch" in body


def test_objectstore_says_404_for_a_missing_key(objectstore: ObjectStore, bucket: str) -> None:
    status, body = objectstore.request("GET", f"/{bucket}/iris/2/model.joblib")
    assert status == 404
    assert b"NoSuchKey" in body
