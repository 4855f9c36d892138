"""Rollbacks through git: a commit that restores one model's file from an earlier revision.

`restore_model` is the library function behind `modelsync rollback MODEL --to REV`:
given a working clone, it finds the file that held the ModelDeployment at the
target revision and commits that file's content. `push_rollback_branch` is what
the operator does after an automatic rollback (when the ModelSync asks for it):
a branch `modelsync/rollback/<model>-<short sha>` off the failed commit whose one
commit restores the model's last healthy file, so a pull request brings git back
in line with what serves. Both use the `git` binary through GitPython.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import git
import yaml

from modelsync import constants as c
from modelsync.fetch import Credentials, FetchError, GitFetcher, git_message

BRANCH_PREFIX = "modelsync/rollback/"
AUTHOR = "modelsync <modelsync@noreply.modelsync.io>"


class RollbackError(Exception):
    """A rollback commit could not be made; the message says why."""


@dataclass(frozen=True)
class RestoredCommit:
    sha: str
    file: str
    branch: str | None


def branch_name(model: str, failed_sha: str) -> str:
    return f"{BRANCH_PREFIX}{model}-{failed_sha[:12]}"


def sha_of(revision: str) -> str:
    """`main@sha1:<sha>` or a plain sha or ref name -> what git understands."""
    match = re.search(r"sha1:([0-9a-f]{40})$", revision)
    return match.group(1) if match else revision


def find_model_file(repo: git.Repo, revision: str, model: str, path: str = "") -> str:
    """The file (relative to the repository root) that defines ModelDeployment `model` at
    `revision`, looking under `path`."""
    sha = sha_of(revision)
    listing: str = repo.git.ls_tree("-r", "--name-only", sha, "--", path.strip("/") or ".")
    for file in listing.splitlines():
        if not file.endswith((".yaml", ".yml", ".json")):
            continue
        try:
            documents = list(yaml.safe_load_all(repo.git.show(f"{sha}:{file}")))
        except yaml.YAMLError:
            continue
        for doc in documents:
            if (
                isinstance(doc, dict)
                and doc.get("kind") == c.MODELDEPLOYMENT_KIND
                and (doc.get("metadata") or {}).get("name") == model
            ):
                return file
    raise RollbackError(f"no ModelDeployment {model!r} under {path or '/'} at {revision}")


def restore_model(
    repo_dir: Path,
    model: str,
    to: str,
    *,
    path: str = "",
    branch: str | None = None,
    start: str = "HEAD",
    reason: str = "",
) -> RestoredCommit:
    """Commit, in the clone at `repo_dir`, the file that held `model` at revision `to`
    (on a new `branch` from `start`, or on the current branch)."""
    try:
        repo = git.Repo(repo_dir)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as error:
        raise RollbackError(f"{repo_dir} is not a git repository") from error
    try:
        file = find_model_file(repo, to, model, path)
        content = repo.git.show(f"{sha_of(to)}:{file}", strip_newline_in_stdout=False)
        if branch:
            repo.git.checkout("-B", branch, sha_of(start))
        target = repo_dir / file
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        repo.git.add("--", file)
        if not repo.git.diff("--cached", "--name-only"):
            raise RollbackError(f"model {model!r} already is as it was at {to}: nothing to commit")
        message = f"Roll back model {model} to {to}"
        if reason:
            message += f"\n\n{reason}"
        repo.git.commit(
            "-m",
            message,
            f"--author={AUTHOR}",
            env={
                "GIT_COMMITTER_NAME": "modelsync",
                "GIT_COMMITTER_EMAIL": "modelsync@noreply.modelsync.io",
            },
        )
    except git.GitCommandError as error:
        raise RollbackError(f"cannot restore {model!r} from {to}: {git_message(error)}") from error
    except (git.BadName, ValueError, KeyError) as error:
        raise RollbackError(f"cannot restore {model!r} from {to}: {error}") from error
    return RestoredCommit(repo.head.commit.hexsha, file, branch)


def push_rollback_branch(
    fetcher: GitFetcher,
    url: str,
    credentials: Credentials | None,
    *,
    model: str,
    failed_revision: str,
    stable_revision: str,
    follow: str,
    path: str,
    reason: str,
) -> str:
    """Push `modelsync/rollback/<model>-<short failed sha>` unless it exists; returns the
    branch name. `follow` is the ref the ModelSync follows (refs/heads/main)."""
    failed_sha = sha_of(failed_revision)
    branch = branch_name(model, failed_sha)
    existing = fetcher.run_git(["ls-remote", url, f"refs/heads/{branch}"], credentials)
    if existing.strip():
        return branch  # one branch per failure, however often we are asked
    with tempfile.TemporaryDirectory(prefix="modelsync-writeback-") as scratch:
        work = Path(scratch)
        fetcher.run_git(
            [
                "clone",
                "--quiet",
                "--no-tags",
                "--single-branch",
                "--branch",
                follow.removeprefix("refs/heads/"),
                url,
                str(work),
            ],
            credentials,
        )
        restored = restore_model(
            work,
            model,
            stable_revision,
            path=path,
            branch=branch,
            start=failed_sha,
            reason=(
                f"{failed_revision} failed and was rolled back automatically: {reason}\n"
                f"This restores the file as it was at {stable_revision}."
            ),
        )
        try:
            fetcher.run_git(
                [
                    "-C",
                    str(work),
                    "push",
                    "--quiet",
                    "origin",
                    f"HEAD:refs/heads/{restored.branch}",
                ],
                credentials,
            )
        except FetchError as error:
            raise RollbackError(f"could not push {branch}: {error}") from error
    return branch
