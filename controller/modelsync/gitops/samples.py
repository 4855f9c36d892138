"""Load, then: the sample bodies a ModelDeployment's spec.validation keeps in files.

A sample of spec.validation may name a JSON file beside its manifest
(`bodyFile`, relative to the manifest's directory) instead of an inline `body`.
The sync reads it from the revision's snapshot and writes it into the object it
applies as `body`, so the operator never reads the repository to validate a pod
and the cluster holds what was validated. The file obeys the trust boundary's
rules for what a revision may reference: inside the revision (no `..` out of it,
no absolute path), no symlink on the way, at most MAX_FILE_BYTES a file and
MAX_MODEL_BYTES for all the samples of one model. Every refusal names the
manifest, the line and the field.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from modelsync.api import constants as c
from modelsync.api import schemas
from modelsync.gitops.load import LoadedObject, RevisionError, Source
from modelsync.gitops.render import _inside, _symlink_on_way

MAX_FILE_BYTES = 64 * 1024
MAX_MODEL_BYTES = 256 * 1024
FIELD = "bodyFile"


class _RefusedError(Exception):
    pass


def _read_body(root: Path, base: Path, reference: str, budget: int) -> tuple[Any, int]:
    """The JSON value of the file `reference` (relative to `base`) and its size."""
    target = _inside(root, base, reference)
    if target is None:
        raise _RefusedError(
            "leads outside the revision; keep the sample file in the repository, beside "
            "the manifest"
        )
    link = _symlink_on_way(root, target)
    if link is not None:
        shown = link.relative_to(root).as_posix()
        where = "" if shown == reference else f" ({shown})"
        raise _RefusedError(f"a symlink{where}; put the file itself there")
    if not target.is_file():
        shown = target.relative_to(root).as_posix()
        where = "" if shown == reference else f" ({shown} in the repository)"
        raise _RefusedError(f"not in the revision{where}; add the file or fix the path")
    size = target.stat().st_size
    if size > MAX_FILE_BYTES:
        raise _RefusedError(f"the file is {size} bytes; a sample file may have {MAX_FILE_BYTES}")
    if size > budget:
        raise _RefusedError(
            f"the samples of this model would exceed {MAX_MODEL_BYTES} bytes; send fewer "
            "or smaller samples"
        )
    try:
        return json.loads(target.read_bytes()), size
    except (ValueError, UnicodeDecodeError) as error:
        raise _RefusedError(f"not JSON: {error}") from error


def _inline_one(
    obj: LoadedObject, root: Path, at: Callable[[tuple[str | int, ...], str], RevisionError]
) -> list[RevisionError]:
    spec = obj.manifest.get("spec")
    validation = spec.get("validation") if isinstance(spec, dict) else None
    samples = validation.get("samples") if isinstance(validation, dict) else None
    if not isinstance(samples, list):
        return []
    base = root / PurePosixPath(obj.source.file).parent
    budget, errors = MAX_MODEL_BYTES, []
    for index, sample in enumerate(samples):
        if not isinstance(sample, dict):
            continue
        path = ("spec", "validation", "samples", index)
        if FIELD not in sample:
            budget -= len(json.dumps(sample.get("body")))
            continue
        reference = sample.pop(FIELD)
        field = f"spec.validation.samples[{index}].{FIELD}"
        if "body" in sample:
            errors.append(at((*path, FIELD), f"{field}: give body or {FIELD}, not both"))
            continue
        if not isinstance(reference, str) or not reference.strip():
            errors.append(at((*path, FIELD), f"{field}: a path relative to this file"))
            continue
        try:
            sample["body"], size = _read_body(root, base, reference, budget)
        except _RefusedError as error:
            errors.append(at((*path, FIELD), f"{field}: {reference}: {error}"))
            continue
        budget -= size
    return errors


def inline(
    objects: list[LoadedObject], root: Path, read: Callable[[str], str]
) -> list[RevisionError]:
    """Replace each sample's `bodyFile` by the `body` it holds, in place; the refusals.
    `root` is the revision's snapshot (or checkout); `read` gives a manifest's text."""
    root = root.resolve()
    errors: list[RevisionError] = []
    for obj in objects:
        manifest = obj.manifest
        if manifest.get("kind") != c.MODELDEPLOYMENT_KIND or not str(
            manifest.get("apiVersion", "")
        ).startswith(f"{c.GROUP}/"):
            continue

        def at(path: tuple[str | int, ...], message: str, obj: LoadedObject = obj) -> RevisionError:
            line = schemas.line_of(read(obj.source.file), obj.source.line, path)
            return RevisionError(Source(obj.source.file, line), message, obj.description)

        errors += _inline_one(obj, root, at)
    return errors
