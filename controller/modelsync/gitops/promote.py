"""`modelsync promote MODEL --from staging --to prod`: the commit that gives prod the
model staging serves.

Environments are declared in `environments.yaml` (see `promotion`). The source's
overlay is rendered at HEAD exactly as the operator renders it (a snapshot of the
commit, `render`), and its spec.model (version, uri, format) is written into the
one patch of the target's overlay that pins the model — only the values, the rest
of the file kept. The commit (that file only, built with git's plumbing in a
temporary index, like a rollback) is rendered again from its own snapshot: the
target's model must then equal the source's and nothing else of the target may
change, or nothing is committed. Whether the source serves that version healthily
is the caller's question (the cluster), asked between `prepare` and `finish`.
"""

from __future__ import annotations

import copy
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import git
import yaml

from modelsync.api import constants as c
from modelsync.gitops.fetch import git_message, snapshot_filter
from modelsync.gitops.promotion import (
    Environment,
    PromotionError,
    describe,
    environments,
    find_model,
    model_fields,
    model_names,
    pick,
    pin,
    promoted,
)
from modelsync.gitops.render import RenderSettings, kustomization_in, render
from modelsync.gitops.writeback import MODE_EXECUTABLE, MODE_FILE, commit_one_file

ENVIRONMENT_FILES = ("environments.yaml", "manifests/environments.yaml")
# As in fetch: tarfile's filters came with Python 3.11.4 (the image's is 3.11.2).
_HAS_FILTERS = hasattr(tarfile, "data_filter")


@dataclass(frozen=True)
class Plan:
    """A promotion ready to land: `commit` exists in the repository, no ref names it yet.
    `commit` is None when the target already has the source's model."""

    model: str
    source: Environment
    target: Environment
    fields: dict[str, str]  # the source's spec.model, now the target's
    before: dict[str, str]  # the target's, before
    name: str  # the source's ModelDeployment, as rendered
    namespace: str
    file: str
    commit: str | None
    branch: str


def _snapshot(repo: git.Repo, commit: str, destination: Path) -> Path:
    """The commit's tree as the operator's snapshot of it: every file, no work tree."""
    archive = destination.with_suffix(".tar")
    with archive.open("wb") as stream:
        repo.git.archive("--format=tar", commit, output_stream=stream)
    destination.mkdir()
    with tarfile.open(archive) as tar:
        for member in tar:
            checked = snapshot_filter(member, str(destination))
            if checked is None:
                continue
            if _HAS_FILTERS:
                tar.extract(checked, destination, filter="fully_trusted")  # checked above
            else:
                tar.extract(checked, destination)
    archive.unlink()
    return destination


def _render(snapshot: Path, env: Environment, settings: RenderSettings) -> list[dict[str, Any]]:
    rendered = render(snapshot, env.path, None, settings, namespace=env.namespace, release=env.sync)
    if rendered.errors:
        shown = "; ".join(
            f"{e.source.file}:{e.source.line}: {e.message}" for e in rendered.errors[:3]
        )
        raise PromotionError(
            f"the {env.name} overlay ({env.path}) does not render: {shown}; fix it first "
            f"(modelsync validate {env.path})"
        )
    return [o.manifest for o in rendered.objects]


def _model(objects: list[dict[str, Any]], model: str, env: Environment) -> dict[str, Any]:
    found = find_model(objects, model)
    if found is None:
        known = ", ".join(model_names(objects)) or "none"
        raise PromotionError(
            f"{env.path}: the {env.name} overlay renders no model {model!r} (models: {known})",
            2,
        )
    return found


def _environments(snapshot: Path, file: str | None) -> tuple[str, dict[str, Environment]]:
    for candidate in [file] if file else ENVIRONMENT_FILES:
        path = snapshot / candidate
        if path.is_file() and not path.is_symlink():
            return candidate, environments(path.read_text(), candidate)
    tried = file or " or ".join(ENVIRONMENT_FILES)
    raise PromotionError(
        f"no {tried} committed in the repository: declare each environment there (a "
        "ModelSync whose spec.path is its overlay), or name the file with --environments",
        2,
    )


def _patch_files(snapshot: Path, env: Environment) -> tuple[str, list[str]]:
    """The target overlay's kustomization and the patch files it lists, from the root."""
    overlay = snapshot / env.path
    kustomization = kustomization_in(overlay) if overlay.is_dir() else None
    if kustomization is None:
        raise PromotionError(
            f"{env.path}: the {env.name} environment's path holds no kustomization; promote "
            "edits the patch of an overlay that pins the model",
            2,
        )
    relative = kustomization.relative_to(snapshot).as_posix()
    document = yaml.safe_load(kustomization.read_text()) or {}
    listed = [
        str(p["path"])
        for p in document.get("patches") or []
        if isinstance(p, dict) and p.get("path")
    ]
    listed += [str(p) for p in document.get("patchesStrategicMerge") or [] if "\n" not in str(p)]
    files = []
    for name in listed:
        joined = os.path.normpath(PurePosixPath(env.path, name).as_posix())
        if (snapshot / joined).is_file():
            files.append(joined)
    return relative, files


def _pin(
    snapshot: Path, env: Environment, names: set[str], fields: dict[str, str]
) -> tuple[str, str, str] | None:
    """(kustomization, the patch file pinning the model, its edited text) or None."""
    kustomization, files = _patch_files(snapshot, env)
    for file in files:
        edited = pin((snapshot / file).read_text(), names, fields)
        if edited is not None:
            return kustomization, file, edited
    return None


def _mode(repo: git.Repo, commit: str, file: str) -> str:
    listing: str = repo.git.ls_tree("-z", "--end-of-options", commit, "--", file)
    meta, _, name = listing.rstrip("\0").partition("\t")
    mode = meta.split()[0] if meta and name == file else ""
    if mode not in (MODE_FILE, MODE_EXECUTABLE):
        raise PromotionError(f"{file} is not a plain file at {commit[:12]}; promote edits files")
    return mode


def _commit(repo: git.Repo, base: str, file: str, text: str, message: str) -> str:
    """`base` with `file` set to `text` (see `commit_one_file`)."""
    mode = _mode(repo, base, file)
    with tempfile.TemporaryDirectory(prefix="modelsync-promote-") as scratch:
        content = Path(scratch) / "content"
        content.write_text(text)
        blob: str = repo.git.hash_object("-w", "--no-filters", "--", str(content))
    return commit_one_file(repo, base, file, mode, blob.strip(), lambda _: message)


def _branch(repo: git.Repo, branch: str) -> None:
    valid = not branch.startswith("-")
    if valid:
        try:
            repo.git.check_ref_format("--branch", branch)
        except git.GitCommandError:
            valid = False
    if not valid:
        raise PromotionError(f"{branch!r} is not a valid branch name; name one with --branch", 2)


def _unchanged_but_model(
    before: list[dict[str, Any]], after: list[dict[str, Any]], name: str, fields: dict[str, str]
) -> bool:
    """`after` is `before` with only `name`'s spec.model fields set to `fields`."""
    expected = copy.deepcopy(before)
    for md in expected:
        if md.get("kind") == c.MODELDEPLOYMENT_KIND and md["metadata"].get("name") == name:
            md["spec"]["model"].update(fields)
    return expected == after


def prepare(
    repo_dir: Path,
    model: str,
    source: str,
    target: str,
    settings: RenderSettings,
    *,
    environments_file: str | None = None,
    branch: str | None = None,
    default_namespace: str = "default",
) -> Plan:
    """Everything but moving a ref: PromotionError (with its exit code) when refused."""
    try:
        repo = git.Repo(repo_dir)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise PromotionError(f"{repo_dir} is not a git repository", 2) from None
    repo.git.update_environment(GIT_LITERAL_PATHSPECS="1")
    if not repo.bare and repo.is_dirty(untracked_files=False):
        raise PromotionError(
            f"{repo_dir} has uncommitted changes; commit or stash them first (promote "
            "renders and commits HEAD)",
            2,
        )
    try:
        head = repo.git.rev_parse("--verify", "HEAD^{commit}").strip()
        with tempfile.TemporaryDirectory(prefix="modelsync-promote-") as scratch:
            return _prepare(
                repo, head, Path(scratch), model, source, target, settings,
                environments_file, branch, default_namespace,
            )  # fmt: skip
    except git.GitCommandError as error:
        raise PromotionError(f"git: {git_message(error)}", 2) from error


def _prepare(
    repo: git.Repo,
    head: str,
    scratch: Path,
    model: str,
    source_name: str,
    target_name: str,
    settings: RenderSettings,
    environments_file: str | None,
    branch: str | None,
    default_namespace: str,
) -> Plan:
    snapshot = _snapshot(repo, head, scratch / "head")
    file, declared = _environments(snapshot, environments_file)
    source, target = pick(declared, source_name, file), pick(declared, target_name, file)
    if source == target:
        raise PromotionError(f"--from and --to both name {source.name}", 2)
    source = _with_namespace(source, default_namespace)
    target = _with_namespace(target, default_namespace)
    staging = _model(_render(snapshot, source, settings), model, source)
    fields = promoted(staging)
    if "version" not in fields:
        raise PromotionError(f"{source.path}: {model} renders no spec.model.version", 2)
    before_objects = _render(snapshot, target, settings)
    prod = _model(before_objects, model, target)
    before = promoted(prod)
    branch = branch or f"{c.PROMOTE_BRANCH_PREFIX}{model}-{fields['version']}"
    _branch(repo, branch)
    plan = Plan(
        model=model,
        source=source,
        target=target,
        fields=fields,
        before=before,
        name=staging["metadata"]["name"],
        namespace=staging["metadata"].get("namespace") or source.namespace,
        file="",
        commit=None,
        branch=branch,
    )
    if all(before.get(key) == value for key, value in fields.items()):
        return plan
    names = {model, prod["metadata"]["name"]} | {
        str(model_fields(md).get("name")) for md in (staging, prod) if model_fields(md).get("name")
    }
    # What differs only: a field the pin leaves to the base, equal in both, stays so.
    changes = {key: value for key, value in fields.items() if before.get(key) != value}
    pinned = _pin(snapshot, target, names, changes)
    if pinned is None:
        raise PromotionError(_not_pinned(snapshot, source, target, model, names, fields))
    _, patch, text = pinned
    message = (
        f"Promote model {model} to {target.name}: {describe(fields)}\n\n"
        f"As {source.name} ({source.path}) serves it; {target.name} had {describe(before)}."
    )
    commit = _commit(repo, head, patch, text, message)
    after_objects = _render(_snapshot(repo, commit, scratch / "promoted"), target, settings)
    after = promoted(_model(after_objects, model, target))
    if after != {**before, **fields}:
        raise PromotionError(
            f"{patch}: after the edit {target.name} renders {model} with {describe(after)}, "
            f"not {describe(fields)}: another patch of {target.path} sets spec.model; pin it "
            "in one patch only. Nothing committed"
        )
    if not _unchanged_but_model(before_objects, after_objects, prod["metadata"]["name"], fields):
        raise PromotionError(
            f"{patch}: the edit changes more of {target.name} than {model}'s spec.model; "
            "give the model a patch of its own. Nothing committed"
        )
    return Plan(**{**plan.__dict__, "file": patch, "commit": commit})


def _with_namespace(env: Environment, default: str) -> Environment:
    if env.namespace:
        return env
    return Environment(env.name, env.path, env.sync, default, env.line)


def _not_pinned(
    snapshot: Path,
    source: Environment,
    target: Environment,
    model: str,
    names: set[str],
    fields: dict[str, str],
) -> str:
    """Refused rather than adding a patch: an overlay without a pin takes the model from
    the base on purpose or by mistake, and a new pin changes which commits move the
    target (a base bump would no longer reach it) — a reviewed edit, not a promotion."""
    kustomization, _ = _patch_files(snapshot, target)
    try:
        example = _pin(snapshot, source, names, fields)
    except PromotionError:  # the source is no overlay: no example to give
        example = None
    like = f" (as {example[1]} does for {source.name})" if example else ""
    return (
        f"{kustomization}: no patch of the {target.name} overlay pins spec.model of {model}, "
        f"so {target.name} takes it from the base; promote changes a pin, it does not add "
        f"one. Add a patch file for ModelDeployment {model} with spec.model.version and uri"
        f"{like} under patches:, commit, and promote again"
    )


def finish(repo_dir: Path, plan: Plan) -> None:
    """Point the promotion branch at the commit (checked out in a clone with a work tree)."""
    assert plan.commit is not None
    repo = git.Repo(repo_dir)
    try:
        if repo.bare:
            repo.git.update_ref(f"refs/heads/{plan.branch}", plan.commit)
        else:
            repo.git.checkout("--quiet", "-B", plan.branch, plan.commit)
    except git.GitCommandError as error:
        raise PromotionError(f"git: {git_message(error)}", 2) from error
