"""`modelsync rollback` and `promote`: a commit to the GitOps repository, which the
operator then syncs like any other change."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from modelsync.cli.common import (
    MD,
    Cluster,
    fail,
    namespace_option,
    out,
    pass_cluster,
    render_settings,
    renderer_options,
)
from modelsync.gitops import render as rendering

FC = TypeVar("FC", bound=Callable[..., Any])


def repo_dir_option(help: str) -> Callable[[FC], FC]:
    """--repo-dir: the clone the command commits in."""
    return click.option(
        "--repo-dir",
        type=click.Path(path_type=Path),
        default=Path("."),
        show_default=True,
        help=help,
    )


@click.command(
    epilog="Example:\n\n\b\n  modelsync rollback iris --to main@sha1:0123abc... "
    "--repo-dir . --branch rollback/iris --push"
)
@click.argument("model")
@click.option(
    "--to", "to", required=True, help="the revision (sha, main@sha1:<sha>, tag) to restore"
)
@repo_dir_option("a clone of the GitOps repository")
@click.option("--path", default="", help="where the models live in the repository")
@click.option("--branch", default=None, help="commit on this new branch (default: current)")
@click.option("--push", is_flag=True, help="push the commit to origin")
def rollback(
    model: str, to: str, repo_dir: Path, path: str, branch: str | None, push: bool
) -> None:
    """Write the git commit that restores MODEL's file as it was at a revision."""
    import git

    from modelsync.gitops.writeback import RollbackError, restore_model

    if not repo_dir.exists():
        fail(f"{repo_dir} does not exist")
    try:
        repo = git.Repo(repo_dir)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        fail(f"{repo_dir} is not a git repository")
    if repo.is_dirty(untracked_files=False):
        fail(f"{repo_dir} has uncommitted changes; commit or stash them first")
    try:
        restored = restore_model(repo_dir, model, to, path=path, branch=branch)
    except RollbackError as error:
        fail(str(error))
    out.print(f"committed {restored.sha[:12]}: {restored.file} restored from {to}")
    if push:
        _push(repo_dir, restored.sha, restored.branch or repo.active_branch.name)


@click.command(
    epilog="Example:\n\n\b\n  modelsync promote iris --from staging --to prod --repo-dir . --push"
)
@click.argument("model")
@click.option("--from", "source", required=True, help="the environment that serves the model")
@click.option("--to", "target", required=True, help="the environment to give it to")
@repo_dir_option("a clone of the GitOps repository (its HEAD is rendered)")
@click.option(
    "--environments",
    "environments_file",
    default=None,
    metavar="FILE",
    help="the ModelSyncs, one per environment, from the repository root "
    "(default: environments.yaml, else manifests/environments.yaml)",
)
@click.option("--branch", default=None, help="default: modelsync/promote/<model>-<version>")
@click.option(
    "--force", is_flag=True, help="promote even when the source does not serve it healthily"
)
@click.option("--push", is_flag=True, help="push the branch to origin")
@renderer_options
@namespace_option
@pass_cluster
def promote(
    cluster: Cluster,
    model: str,
    source: str,
    target: str,
    repo_dir: Path,
    environments_file: str | None,
    branch: str | None,
    force: bool,
    push: bool,
    kustomize_binary: str,
    helm_binary: str,
) -> None:
    """Commit, on a branch of its own, the source environment's spec.model of MODEL
    (version, uri, format) into the patch of the target's overlay that pins it, checked
    by rendering the target as the operator does. Refused (exit 1) unless the source
    serves that version healthily, or --force."""
    from modelsync.gitops.promote import finish, prepare
    from modelsync.gitops.promotion import PromotionError, describe, unhealthy

    if not repo_dir.exists():
        fail(f"{repo_dir} does not exist")
    try:
        plan = prepare(
            repo_dir,
            model,
            source,
            target,
            render_settings(kustomize_binary, helm_binary),
            environments_file=environments_file,
            branch=branch,
            default_namespace=cluster.namespace,
        )
        if plan.commit is None:
            out.print(
                f"{plan.target.name} already has {model} {describe(plan.fields)}: "
                "nothing to promote",
                markup=False,
            )
            return
        if not force:
            live = _live_model(cluster, plan.name, plan.namespace)
            problems = unhealthy(live, plan.fields, plan.source.sync)
            if problems:
                fail(
                    f"{plan.source.name} does not serve {model} {plan.fields['version']} "
                    f"healthily: ModelDeployment {plan.namespace}/{plan.name}: "
                    f"{'; '.join(problems)}. Nothing committed; wait for it "
                    f"(modelsync status -n {plan.namespace}), or --force",
                    code=1,
                )
        finish(repo_dir, plan)
    except rendering.RendererMissingError as missing:
        fail(str(missing))
    except PromotionError as error:
        fail(str(error), code=error.code)
    out.print(
        f"committed {plan.commit[:12]} on {plan.branch}: {plan.file}: {model} "
        f"{describe(plan.before)} -> {describe(plan.fields)} (as {plan.source.name})",
        markup=False,
    )
    if push:
        _push(repo_dir, plan.commit, plan.branch)


def _push(repo_dir: Path, sha: str, branch: str) -> None:
    """Push the commit to origin's `branch`; a refusal ends the command (exit 1)."""
    import git

    try:
        git.Repo(repo_dir).git.push("--end-of-options", "origin", f"{sha}:refs/heads/{branch}")
    except git.GitCommandError as error:
        fail(f"push to origin failed: {str(error.stderr).strip()}", code=1)
    out.print(f"pushed to origin {branch}")


def _live_model(cluster: Cluster, name: str, namespace: str) -> dict[str, Any] | None:
    """The ModelDeployment as it runs, or None when there is none."""
    import kubernetes

    def get() -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = cluster.api.get_namespaced_custom_object(
                name=name, namespace=namespace, **MD
            )
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return None
            raise
        return found

    live: dict[str, Any] | None = cluster.call(f"ModelDeployment {name!r}", get)
    return live
