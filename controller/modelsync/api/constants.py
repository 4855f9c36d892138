"""Every name modelsync shares with the cluster: the API group, labels, annotations,
condition types and reasons. Nothing else in the code spells these strings."""

from __future__ import annotations

from typing import Final

GROUP: Final = "modelsync.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

MODELDEPLOYMENT_KIND: Final = "ModelDeployment"
MODELDEPLOYMENT_PLURAL: Final = "modeldeployments"

# Server-side apply: one field manager for everything the operator writes.
FIELD_MANAGER: Final = "modelsync"

# Labels (selectable).
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "modelsync"
LABEL_MODEL: Final = f"{GROUP}/model"
LABEL_MODEL_VERSION: Final = f"{GROUP}/version"
LABEL_DEPLOYMENT: Final = f"{GROUP}/modeldeployment"

# Annotations (not selectable).
ANNOTATION_SPEC_HASH: Final = f"{GROUP}/spec-hash"
ANNOTATION_REVISION: Final = f"{GROUP}/revision"

# Condition types of a ModelDeployment.
READY: Final = "Ready"
PROGRESSING: Final = "Progressing"
DEGRADED: Final = "Degraded"

# Condition reasons (CamelCase, as Kubernetes spells them).
REASON_AVAILABLE: Final = "Available"
REASON_ROLLING_OUT: Final = "RollingOut"
REASON_ROLLED_OUT: Final = "RolledOut"
REASON_PROGRESS_DEADLINE_EXCEEDED: Final = "ProgressDeadlineExceeded"
REASON_PODS_NOT_READY: Final = "PodsNotReady"
REASON_INVALID_SPEC: Final = "InvalidSpec"
REASON_APPLY_FAILED: Final = "ApplyFailed"
REASON_AS_EXPECTED: Final = "AsExpected"
REASON_SCALED_TO_ZERO: Final = "ScaledToZero"

# Event reasons.
EVENT_DRIFT_REVERTED: Final = "DriftReverted"
EVENT_APPLIED: Final = "Applied"
EVENT_INVALID_SPEC: Final = REASON_INVALID_SPEC

# ModelSync.
MODELSYNC_KIND: Final = "ModelSync"
MODELSYNC_PLURAL: Final = "modelsyncs"
LABEL_SYNC_NAME: Final = f"{GROUP}/sync-name"
# Which operator shard (`modelsync run --shard`) reconciles a ModelSync and everything it
# applies; without it, the unsharded operator does (Flux's sharding.fluxcd.io/key).
LABEL_SHARD: Final = f"{GROUP}/shard"
LABEL_SYNC_NAMESPACE: Final = f"{GROUP}/sync-namespace"
# On a ModelSync of environments.yaml: the environment it applies (`modelsync promote
# --from/--to`); without it, the ModelSync's name is the environment's.
LABEL_ENVIRONMENT: Final = f"{GROUP}/environment"
# The branch `modelsync promote` commits on: <prefix><model>-<version>.
PROMOTE_BRANCH_PREFIX: Final = "modelsync/promote/"
ANNOTATION_RECONCILE_REQUESTED: Final = f"{GROUP}/reconcile-requested-at"
# On a live object that no ModelSync created: "<namespace>/<name>" of the one ModelSync
# allowed to take it over.
ANNOTATION_ADOPT: Final = f"{GROUP}/adopt"

RECONCILING: Final = "Reconciling"
STALLED: Final = "Stalled"

REASON_SUCCEEDED: Final = "Succeeded"
REASON_PROGRESSING: Final = "Progressing"
REASON_FETCH_FAILED: Final = "FetchFailed"
# The revision is over the byte budget (--max-revision-bytes): content, not retried.
REASON_REVISION_TOO_LARGE: Final = "RevisionTooLarge"
REASON_VALIDATION_FAILED: Final = "ValidationFailed"
# The kustomize or helm binary a revision needs is not installed: the operator's, retried.
REASON_RENDERER_MISSING: Final = "RendererMissing"
REASON_PRUNE_REFUSED: Final = "PruneRefused"
# The API server refused to delete an object git dropped (an admission policy, RBAC).
REASON_PRUNE_FAILED: Final = "PruneFailed"
REASON_OWNERSHIP_CONFLICT: Final = "OwnershipConflict"
# The writer's account may not write an object (403): retried with backoff, since a
# RoleBinding just created (or about to be) mends it without a commit.
REASON_FORBIDDEN: Final = "Forbidden"
# The ModelSync names a shard no operator runs (no live Lease publishes it): set by the
# unsharded leader, since no shard would ever look at it.
REASON_NO_SHARD: Final = "NoShard"
REASON_EMPTY_REVISION: Final = "EmptyRevision"
REASON_DRIFT_DETECTED: Final = "DriftDetected"
REASON_SUSPENDED: Final = "Suspended"
# Tenancy: who applies a ModelSync's content, and where it may write.
REASON_SERVICE_ACCOUNT_NOT_FOUND: Final = "ServiceAccountNotFound"
REASON_TARGET_NAMESPACE_NOT_ALLOWED: Final = "TargetNamespaceNotAllowed"
REASON_NAMESPACE_NOT_ENABLED: Final = "NamespaceNotEnabled"
# How a platform team enables a namespace for the operator's writes, Secret reads and
# impersonation (cluster-wide mode: the operator only reads elsewhere).
NAMESPACE_NOT_ENABLED_FIX: Final = (
    "chart value tenancy.namespaces, or a RoleBinding to ClusterRole <release>-tenant-access"
)
# Remote clusters (spec.kubeConfig): the namespace may not name one (a platform setting);
# its kubeconfig Secret is missing, of another type or refused; its API server does not
# answer.
REASON_REMOTE_CLUSTER_NOT_ALLOWED: Final = "RemoteClusterNotAllowed"
REASON_KUBECONFIG_INVALID: Final = "KubeConfigInvalid"
REASON_CLUSTER_UNREACHABLE: Final = "ClusterUnreachable"
# The environment failed the sync (API server unreachable, overloaded): tried again soon.
REASON_RETRYING: Final = "Retrying"
# A fault of ours: recorded, tried again with backoff, never a hot loop.
REASON_INTERNAL_ERROR: Final = "InternalError"

# Whether the models of the last applied revision are Ready (Flux's `wait: true`).
HEALTHY: Final = "Healthy"
REASON_MODELS_READY: Final = "ModelsReady"
REASON_MODELS_NOT_READY: Final = "ModelsNotReady"
EVENT_MODELS_NOT_READY: Final = "ModelsNotReady"

EVENT_SYNCED: Final = "Synced"
EVENT_SYNC_FAILED: Final = "SyncFailed"

# Rollouts and rollbacks.
LABEL_SPEC_HASH: Final = f"{GROUP}/spec-hash"
ROLLED_BACK: Final = "RolledBack"
REASON_CRASH_LOOP: Final = "ContainersRestarting"
# The storage initializer (an init container) failed for good: its termination message says why.
REASON_MODEL_DOWNLOAD_FAILED: Final = "ModelDownloadFailed"
REASON_ROLLED_BACK: Final = "RolledBack"
REASON_SUPERSEDED: Final = "Superseded"
REASON_FAILED: Final = "Failed"
EVENT_ROLLED_BACK: Final = "RolledBack"
EVENT_ROLLOUT_FAILED: Final = "RolloutFailed"
HISTORY_SUCCEEDED: Final = "Succeeded"
HISTORY_FAILED: Final = "Failed"
HISTORY_ROLLED_BACK: Final = "RolledBack"
WRITE_BACK: Final = "WriteBack"
REASON_WRITE_BACK_FAILED: Final = "WriteBackFailed"
LABEL_TRACK: Final = f"{GROUP}/track"
TRACK_CANARY: Final = "canary"
REASON_CANARY: Final = "Canary"
REASON_ANALYSIS_FAILED: Final = "AnalysisFailed"
# The analysis failed during the watch after a promotion (postPromotionSeconds).
REASON_POST_PROMOTION_ANALYSIS_FAILED: Final = "PostPromotionAnalysisFailed"
# The only Secrets whose keys the canary analysis sends as request headers (never a
# service-account token, never a Secret made for something else).
SECRET_TYPE_ANALYSIS_HEADERS: Final = f"{GROUP}/analysis-headers"

# The inference gate (spec.validation): the readiness gate of each new pod, the digest of
# the samples on its template (new samples are a new revision), and the condition's
# reasons, which are also the rollout's when the samples fail or the pod never answers.
CONDITION_VALIDATED: Final = f"{GROUP}/validated"
ANNOTATION_VALIDATION: Final = f"{GROUP}/validation"
REASON_SAMPLES_PASSED: Final = "SamplesPassed"
REASON_SAMPLES_FAILED: Final = "SamplesFailed"
REASON_POD_UNREACHABLE: Final = "PodUnreachable"
# A new pod waits for one of the gate's slots (shared by namespace): Progressing stays
# True with this reason, and the progress deadline waits (serving/rollout.py).
REASON_WAITING_FOR_SLOT: Final = "WaitingForValidationSlot"
MESSAGE_WAITING_FOR_SLOT: Final = "waiting for a validation slot: {ahead} ahead"

# The operator's own pod while it leads: the chart's webhook Service selects it, so
# pushes reach the replica that acts, never a standby.
LABEL_LEADER: Final = f"{GROUP}/leader"

# The only Secret type spec.repo.secretRef may name: credentials are sent to the URL the
# tenant chose, so only a Secret made for that leaves the namespace (never, say, a
# service-account token that happens to have a `token` key).
SECRET_TYPE_GIT: Final = f"{GROUP}/git"
# The only Secret type spec.notify.secretRef may name: its `token` goes to a git host's
# API (commit statuses), so only a Secret made for that is ever sent.
SECRET_TYPE_PROVIDER: Final = f"{GROUP}/git-provider"
# The only Secret type spec.kubeConfig.secretRef may name, and its key: the kubeconfig of
# a remote cluster, made for that.
SECRET_TYPE_KUBECONFIG: Final = f"{GROUP}/kubeconfig"
KUBECONFIG_KEY: Final = "value"
# Which controllers one operator runs (`--controllers`): a remote cluster's runs serving.
CONTROLLER_GITOPS: Final = "gitops"
CONTROLLER_SERVING: Final = "serving"
# A commit status could not be set (the provider, the revision and the host's answer).
EVENT_COMMIT_STATUS_FAILED: Final = "CommitStatusFailed"
# A model's rollback pull request was opened, updated or closed as superseded; or could not be.
EVENT_PULL_REQUEST: Final = "RollbackPullRequest"
EVENT_PULL_REQUEST_FAILED: Final = "RollbackPullRequestFailed"
# The only Secret type spec.notify.receivers[].secretRef may name: its `address` (a
# receiver URL; a Slack webhook URL is itself a credential) and `token` (the HMAC key of
# a generic webhook) leave the cluster, so only a Secret made for that is ever read.
SECRET_TYPE_NOTIFICATION: Final = f"{GROUP}/notification"
# A notification could not be delivered, or its receiver was refused (never its address).
EVENT_NOTIFICATION_FAILED: Final = "NotificationFailed"
# What a notification tells (spec.notify.receivers[].events), one per outcome a person acts on.
NOTICE_REVISION_REJECTED: Final = "RevisionRejected"
NOTICE_ROLLOUT_FAILED: Final = "RolloutFailed"
NOTICE_ROLLED_BACK: Final = "RolledBack"
NOTICE_ANALYSIS_FAILED: Final = "AnalysisFailed"
NOTICE_WRITE_BACK_FAILED: Final = "WriteBackFailed"
NOTICE_RECOVERED: Final = "Recovered"
NOTICES: Final = (
    NOTICE_REVISION_REJECTED,
    NOTICE_ROLLOUT_FAILED,
    NOTICE_ROLLED_BACK,
    NOTICE_ANALYSIS_FAILED,
    NOTICE_WRITE_BACK_FAILED,
    NOTICE_RECOVERED,
)
RECEIVER_WEBHOOK: Final = "webhook"
RECEIVER_SLACK: Final = "slack"
# `modelsync run` flag that lets ModelSyncs name file:// repositories.
FLAG_ALLOW_FILE_URLS: Final = "--allow-file-urls"
