"""A ModelDeployment reconcile that raises is said in the model's status (Ready=False
with the reason and the API server's words, or InternalError for a fault of ours) and
an Event, and tried again with the work queue's backoff; its fix clears it."""

from __future__ import annotations

from modelsync.api import constants as c
from modelsync.serving.reconciler import MAX_FAILURE_MESSAGE
from tests.support.cluster import LocalCluster
from tests.support.kube import dict_condition
from tests.support.models import Models, condition_is, manifest, ready_on, wait_for_event


def test_a_serving_object_the_api_server_refuses_is_reported_in_status_then_fixed(
    models: Models, local_cluster: LocalCluster, namespace: str
) -> None:
    # The CRD takes any string as a nodeSelector key; the Deployment's validation does not.
    models.create(manifest("iris", nodeSelector={"not a/valid/label key": "x"}))
    md = models.wait("iris", condition_is(c.READY, "False", c.REASON_APPLY_FAILED))
    message = (dict_condition(md, c.READY) or {})["message"]
    assert "nodeSelector" in message
    assert message.startswith("reconcile failed, retrying with backoff: ")
    assert len(message) <= MAX_FAILURE_MESSAGE
    wait_for_event(local_cluster, namespace, "iris", c.REASON_APPLY_FAILED, "nodeSelector")

    models.patch("iris", {"spec": {"nodeSelector": None}})
    models.wait("iris", ready_on("1"))
