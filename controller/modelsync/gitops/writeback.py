"""Rollbacks through git: a commit that restores one model's file from an earlier revision.

`restore_model` is the library function behind `modelsync rollback MODEL --to REV`:
given a clone, it finds the file that held the ModelDeployment at the target
revision and commits that file's content. `push_rollback_branch` is what the
operator does after an automatic rollback (when the ModelSync asks for it): a
branch `modelsync/rollback/<model>-<short sha>` off the failed commit whose one
commit restores the model's last healthy file, so a pull request brings git back
in line with what serves. It fetches the two commits it needs and nothing else
(shallow, blobs over the loader's file limit left out where the server can filter,
each file git writes cut off), into a scratch directory of the git cache reserved in
its disk budget: never a full-history clone in /tmp.

The commit is built with git's plumbing, in a temporary index and never in a
work tree (read-tree, update-index --cacheinfo, write-tree, commit-tree): the
failed commit is the tenant's, and a symlink planted in it must not turn
"write the model's file" into "write any file the operator can". A restored
path that is, or lies under, a symlink (in any directory, dot-directories
included) is refused. In a developer's clone, git itself then moves the branch
and updates the work tree (its checkout never writes through a symlink).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import git

from modelsync.api import constants as c
from modelsync.gitops import load as loadmod
from modelsync.gitops.commitstatus import ROLLBACK_BRANCH_PREFIX
from modelsync.gitops.disk import DiskFullError
from modelsync.gitops.fetch import (
    Credentials,
    FetchError,
    GitFetcher,
    git_message,
    private_environment,
)
from modelsync.gitops.load import MAX_FILE_BYTES

BRANCH_PREFIX = ROLLBACK_BRANCH_PREFIX
AUTHOR_NAME = "modelsync"
AUTHOR_EMAIL = "modelsync@noreply.modelsync.io"
AUTHOR = f"{AUTHOR_NAME} <{AUTHOR_EMAIL}>"
MODE_FILE = "100644"
MODE_EXECUTABLE = "100755"
MODE_SYMLINK = "120000"
MODE_SUBMODULE = "160000"


class RollbackError(Exception):
    """A rollback commit could not be made; the message says why."""


@dataclass(frozen=True)
class RestoredCommit:
    sha: str
    file: str
    branch: str | None


@dataclass(frozen=True)
class _Entry:
    mode: str
    kind: str
    object: str


def branch_name(model: str, failed_sha: str) -> str:
    return f"{BRANCH_PREFIX}{model}-{failed_sha[:12]}"


def pull_request_branch(model: str) -> str:
    """The head of a model's rollback pull request: one per model, moved (forced) to each
    new failure's rollback commit, so one pull request follows the model's failures."""
    return f"{ROLLBACK_BRANCH_PREFIX}{model}"


def sha_of(revision: str) -> str:
    """`main@sha1:<sha>` or a plain sha or ref name -> what git understands."""
    match = re.search(r"sha1:([0-9a-f]{40})$", revision)
    return match.group(1) if match else revision


def commit_of(repo: git.Repo, revision: str) -> str:
    """The 40-hex commit `revision` names; nothing git could take for an option."""
    name = sha_of(revision)
    if not name or name.startswith("-"):
        raise RollbackError(f"{revision!r} is not a revision")
    try:
        sha: str = repo.git.rev_parse(
            "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}"
        )
    except git.GitCommandError:
        raise RollbackError(f"revision {revision!r} is not a commit of this repository") from None
    return sha.strip()


def _entry(repo: git.Repo, commit: str, path: str) -> _Entry | None:
    """What `path` is in `commit`'s tree (mode, type, object), or None."""
    listing: str = repo.git.ls_tree("-z", "--end-of-options", commit, "--", path)
    for line in listing.split("\0"):
        meta, _, name = line.partition("\t")
        if name == path:  # the entry itself, whatever a path could match as a pattern
            mode, kind, obj = meta.split()
            return _Entry(mode, kind, obj)
    return None


def _refuse_links(repo: git.Repo, commit: str, file: str, revision: str) -> None:
    """`file` and each directory above it must be plain (not a symlink, not a submodule)
    in `commit`: what git would write there must stay inside the repository."""
    parts = PurePosixPath(file).parts
    for depth in range(1, len(parts) + 1):
        path = "/".join(parts[:depth])
        entry = _entry(repo, commit, path)
        if entry is None:
            return  # nothing there yet: update-index makes the directories
        if entry.mode in (MODE_SYMLINK, MODE_SUBMODULE):
            what = "a symlink" if entry.mode == MODE_SYMLINK else "a submodule"
            raise RollbackError(
                f"{path} is {what} at {revision}: a rollback never writes through it to "
                f"restore {file}; replace it with a plain directory or file in git first"
            )


def find_model_file(repo: git.Repo, revision: str, model: str, path: str = "") -> str:
    """The file (relative to the repository root) that defines ModelDeployment `model` at
    `revision`, looking under `path` where the loader looks (dot-directories and sample
    bodies skipped), with the loader's bounds: no file over its per-file limit is read,
    one that does not even name the model is not parsed, and what is parsed is parsed
    as the sync parses it (node and depth limits, libyaml)."""
    sha = commit_of(repo, revision)
    listing: str = repo.git.ls_tree(
        "-r", "-l", "-z", "--end-of-options", sha, "--", path.strip("/") or "."
    )
    for line in filter(None, listing.split("\0")):
        meta, _, file = line.partition("\t")
        mode, kind, blob, size = meta.split()
        if kind != "blob" or mode not in (MODE_FILE, MODE_EXECUTABLE):
            continue
        if not file.endswith(loadmod.EXTENSIONS) or file.endswith(loadmod.SAMPLE_BODY_SUFFIX):
            continue
        if any(part.startswith(".") for part in PurePosixPath(file).parts[:-1]):
            continue
        # Over the loader's limit (or left out by the write-back's filtered fetch, whose
        # size git cannot tell): never read.
        if not size.isdigit() or int(size) > loadmod.MAX_FILE_BYTES:
            continue
        try:
            text = repo.git.cat_file("blob", blob, strip_newline_in_stdout=False)
        except git.GitCommandError:
            continue  # a blob the write-back's filtered fetch left out
        if model not in text:
            continue
        loaded = loadmod.Loaded()
        loadmod._documents(text, file, loaded)
        for found in loaded.objects:
            doc = found.manifest
            if (
                doc.get("kind") == c.MODELDEPLOYMENT_KIND
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
    environment: dict[str, str] | None = None,
) -> RestoredCommit:
    """Commit, in the clone at `repo_dir`, the file that held `model` at revision `to`:
    a commit whose parent is `start` and whose tree is `start`'s with that one file as it
    was at `to`. With `branch`, the branch is set to it (and checked out in a clone with a
    work tree); without, the current branch fast-forwards to it. A bare repository's
    work tree is never made: nothing is written but git objects and the ref."""
    try:
        repo = git.Repo(repo_dir)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as error:
        raise RollbackError(f"{repo_dir} is not a git repository") from error
    # Paths from the tenant's tree are names, never patterns (`*`, `:(glob)`).
    repo.git.update_environment(GIT_LITERAL_PATHSPECS="1", **(environment or {}))
    if branch is not None:
        _check_branch(repo, branch)
    try:
        target, base = commit_of(repo, to), commit_of(repo, start)
    except RollbackError as error:
        raise RollbackError(f"cannot restore {model!r} from {to}: {error}") from None
    try:
        file = find_model_file(repo, to, model, path)
        _refuse_links(repo, target, file, to)
        _refuse_links(repo, base, file, start)
        restored = _entry(repo, target, file)
        assert restored is not None  # find_model_file found it there
        commit = _commit(repo, base, file, restored, model, to, reason)
        if repo.bare:
            if branch:
                repo.git.update_ref(f"refs/heads/{branch}", commit)
        elif branch:
            repo.git.checkout("--quiet", "-B", branch, commit)
        else:
            repo.git.merge("--quiet", "--ff-only", commit)
    except git.GitCommandError as error:
        raise RollbackError(f"cannot restore {model!r} from {to}: {git_message(error)}") from error
    except (ValueError, KeyError) as error:
        raise RollbackError(f"cannot restore {model!r} from {to}: {error}") from error
    return RestoredCommit(commit, file, branch)


@contextlib.contextmanager
def _scratch(fetcher: GitFetcher, branch: str) -> Iterator[Path]:
    """A write-back's directory in the git cache, room reserved for a fetch of two
    commits into a new repository."""
    try:
        with fetcher.scratch(fetcher.clone_bytes, "a write-back's clone") as scratch:
            yield scratch
    except DiskFullError as error:
        raise RollbackError(f"could not push {branch}: {error}") from None


def _check_branch(repo: git.Repo, branch: str) -> None:
    try:
        repo.git.check_ref_format("--branch", branch)
    except git.GitCommandError:
        raise RollbackError(f"{branch!r} is not a valid branch name") from None
    if branch.startswith("-"):
        raise RollbackError(f"{branch!r} is not a valid branch name")


def _commit(
    repo: git.Repo, base: str, file: str, restored: _Entry, model: str, to: str, reason: str
) -> str:
    """The commit: `base`'s tree with `file` set to the blob it had at `to`."""

    def message(tree: str) -> str:
        if tree == repo.git.rev_parse("--verify", f"{base}^{{tree}}"):
            raise RollbackError(f"model {model!r} already is as it was at {to}: nothing to commit")
        text = f"Roll back model {model} to {to}"
        return f"{text}\n\n{reason}" if reason else text

    return commit_one_file(repo, base, file, restored.mode, restored.object, message)


def commit_one_file(
    repo: git.Repo, base: str, file: str, mode: str, blob: str, message: Callable[[str], str]
) -> str:
    """A commit of `base`'s tree with `file` set to `blob`, built in a temporary index (the
    repository's own index and work tree untouched), as rollback and promote write them;
    `message` is given the new tree (and may refuse it)."""
    with tempfile.TemporaryDirectory(prefix="modelsync-commit-") as scratch:
        env = {
            "GIT_INDEX_FILE": os.path.join(scratch, "index"),
            "GIT_AUTHOR_NAME": AUTHOR_NAME,
            "GIT_AUTHOR_EMAIL": AUTHOR_EMAIL,
            "GIT_COMMITTER_NAME": AUTHOR_NAME,
            "GIT_COMMITTER_EMAIL": AUTHOR_EMAIL,
        }
        repo.git.read_tree("--end-of-options", base, env=env)
        repo.git.update_index("--add", "--cacheinfo", f"{mode},{blob},{file}", env=env)
        tree: str = repo.git.write_tree(env=env).strip()
        commit: str = repo.git.commit_tree(tree, "-p", base, "-m", message(tree), env=env)
    return commit.strip()


def push_rollback_branch(
    fetcher: GitFetcher,
    url: str,
    credentials: Credentials | None,
    *,
    model: str,
    failed_revision: str,
    stable_revision: str,
    path: str,
    reason: str,
    also: str | None = None,
) -> str:
    """Push `modelsync/rollback/<model>-<short failed sha>` unless it exists; returns the
    branch name. `also`: a branch set to the same commit in the same push, forced (a
    pull request's head). The commit's parent is the failed commit; the push negotiates
    what the server has, so only the new commit and its changed trees are sent."""
    failed_sha = sha_of(failed_revision)
    branch = branch_name(model, failed_sha)
    existing = fetcher.run_git(
        ["ls-remote", "--end-of-options", url, f"refs/heads/{branch}"], credentials
    )
    if existing.strip():
        return branch  # one branch per failure, however often we are asked
    with _scratch(fetcher, branch) as scratch:
        # Bare: the tenant's files are never written out, only git objects. The model's
        # file at the stable revision was loaded by a sync: it is within the loader's limit.
        work = scratch / "repo.git"
        shas = [failed_sha, sha_of(stable_revision)]
        fetcher.fetch_commits(work, url, shas, credentials, MAX_FILE_BYTES)
        with private_environment(None) as private:  # no HOME of the operator's, no config
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
                environment=private,
            )
        try:
            fetcher.run_git(
                [
                    "push",
                    "--quiet",
                    "--end-of-options",
                    url,
                    f"{restored.sha}:refs/heads/{restored.branch}",
                    *([f"+{restored.sha}:refs/heads/{also}"] if also else []),
                ],
                credentials,
                git_dir=work,
            )
        except FetchError as error:
            raise RollbackError(f"could not push {branch}: {error}") from error
    return branch
