"""Promotion's decisions: which environments a repository declares, what staging's
render says of a model, whether staging serves it healthily, and the edit of the one
patch that pins the model in the target environment's overlay.

Pure: text and plain objects in, text and findings out. `promote` is the shell (git,
rendering, the cluster) around it.

An environment is a ModelSync of `environments.yaml` (kind ModelSync, one document
each): its name is the label `modelsync.io/environment` (else the ModelSync's name),
its overlay is `spec.path`. The same file is what `kubectl apply` creates the
ModelSyncs from, so the mapping cannot drift from what runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

import yaml

from modelsync.api import constants as c
from modelsync.api import manifest as m
from modelsync.api.conditions import is_true
from modelsync.api.manifest import JsonValue

Object = TypeVar("Object", bound=Mapping[str, object])

# What promotion copies: the model's identity. Replicas, resources and rollout stay
# each environment's own.
MODEL_FIELDS = ("version", "uri", "format")


class PromotionError(Exception):
    """Promotion cannot go on; `code` is the CLI's exit code (1 refused, 2 bad input)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Environment:
    name: str
    path: str  # the overlay directory, from the repository root
    sync: str  # the ModelSync that applies it
    namespace: str
    line: int  # where environments.yaml declares it


def environments(text: str, file: str) -> dict[str, Environment]:
    """The environments `file` declares, by name; PromotionError(code 2) on bad content."""
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise PromotionError(f"{file}:{line}: invalid YAML: {error}", 2) from None
    found: dict[str, Environment] = {}
    for node, document in zip(nodes, documents, strict=True):
        if document is None:
            continue
        line = node.start_mark.line + 1
        if not isinstance(document, dict) or document.get("kind") != c.MODELSYNC_KIND:
            raise PromotionError(
                f"{file}:{line}: not a ModelSync; environments.yaml holds one ModelSync per "
                "environment (spec.path: its overlay)",
                2,
            )
        meta = document.get("metadata") or {}
        spec = document.get("spec") or {}
        name = (meta.get("labels") or {}).get(c.LABEL_ENVIRONMENT) or meta.get("name")
        path = str(spec.get("path") or "").strip("/")
        if not name or not path:
            raise PromotionError(
                f"{file}:{line}: a ModelSync needs metadata.name and spec.path (its overlay)", 2
            )
        if name in found:
            raise PromotionError(
                f"{file}:{line}: environment {name!r} is declared twice (first at line "
                f"{found[name].line}); give each ModelSync its own {c.LABEL_ENVIRONMENT} label",
                2,
            )
        found[name] = Environment(
            str(name), path, str(meta.get("name")), str(meta.get("namespace") or ""), line
        )
    return found


def pick(declared: dict[str, Environment], name: str, file: str) -> Environment:
    if name not in declared:
        known = ", ".join(sorted(declared)) or "none"
        raise PromotionError(
            f"{file}: no environment {name!r} (declared: {known}); add a ModelSync labelled "
            f"{c.LABEL_ENVIRONMENT}: {name} whose spec.path is its overlay",
            2,
        )
    return declared[name]


def find_model(objects: list[Object], model: str) -> Object | None:
    """The ModelDeployment of `model` in a render: by name, else by spec.model.name (an
    overlay's nameSuffix renames the object, not the model)."""
    deployments = [o for o in objects if o.get("kind") == c.MODELDEPLOYMENT_KIND]
    for md in deployments:
        if m.get(md, "metadata", "name") == model:
            return md
    named = [md for md in deployments if model_fields(md).get("name") == model]
    return named[0] if len(named) == 1 else None


def model_names(objects: list[Object]) -> list[str]:
    return sorted(
        str(model_fields(o).get("name") or m.get(o, "metadata", "name"))
        for o in objects
        if o.get("kind") == c.MODELDEPLOYMENT_KIND
    )


def model_fields(md: Mapping[str, object]) -> Mapping[str, JsonValue]:
    return m.mapping(md, "spec", "model")


def promoted(md: Mapping[str, object]) -> dict[str, str]:
    """The fields promotion copies, as the render has them (absent ones left out)."""
    fields = model_fields(md)
    return {key: str(fields[key]) for key in MODEL_FIELDS if fields.get(key) is not None}


def describe(fields: dict[str, str]) -> str:
    return ", ".join(f"{key} {fields[key]}" for key in MODEL_FIELDS if key in fields)


def unhealthy(live: Mapping[str, object] | None, expected: dict[str, str], sync: str) -> list[str]:
    """Why the live ModelDeployment does not serve `expected` healthily (empty: it does):
    applied by `sync`, its current spec seen, Ready, not rolled back, serving the
    version git says, with the uri and format git says."""
    if live is None:
        return ["it does not exist in the cluster (has the ModelSync applied it?)"]
    meta, status = m.mapping(live, "metadata"), m.mapping(live, "status")
    problems = []
    applied_by = m.get(meta, "labels", c.LABEL_SYNC_NAME)
    if applied_by != sync:
        problems.append(f"it is not applied by ModelSync {sync} (but by {applied_by or 'none'})")
    conditions = status.get("conditions")
    if is_true(conditions, c.ROLLED_BACK):
        failed = status.get("failedGitRevision") or "a revision"
        problems.append(f"it is rolled back ({failed} failed)")
    if status.get("observedGeneration") != meta.get("generation"):
        problems.append("its current spec is still being rolled out")
    if not is_true(conditions, c.READY):
        problems.append("it is not Ready")
    serving = status.get("modelVersion")
    if serving != expected.get("version"):
        problems.append(f"it serves version {serving or 'none'}, git says {expected['version']}")
    live_fields = promoted(live)
    for key in ("uri", "format"):
        if live_fields.get(key) != expected.get(key):
            problems.append(f"its {key} is {live_fields.get(key)}, git says {expected.get(key)}")
    return problems


def pin(text: str, names: set[str], wanted: dict[str, str]) -> str | None:
    """`text` (a patch file) with spec.model's fields set to `wanted` in the document
    that patches a ModelDeployment named in `names`, comments and layout kept; None when
    no document there pins spec.model. Only the values change: a field the patch leaves
    out is added beside the others."""
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        return None
    for node in nodes:
        model = _model_node(node, names)
        if model is not None:
            return _edit(text, model, wanted)
    return None


def _get(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v if isinstance(v, yaml.Node) else None
    return None


def _model_node(document: yaml.Node | None, names: set[str]) -> yaml.MappingNode | None:
    kind = _get(document, "kind")
    name = _get(_get(document, "metadata"), "name")
    if not (isinstance(kind, yaml.ScalarNode) and kind.value == c.MODELDEPLOYMENT_KIND):
        return None
    if not (isinstance(name, yaml.ScalarNode) and name.value in names):
        return None
    model = _get(_get(document, "spec"), "model")
    return model if isinstance(model, yaml.MappingNode) else None


def _edit(text: str, model: yaml.MappingNode, wanted: dict[str, str]) -> str:
    """Replace each value in place (from the end, so earlier offsets hold); add the
    missing ones after the last field, as a block line or inside the flow mapping."""
    edits: list[tuple[int, int, str]] = []
    missing = []
    for key in MODEL_FIELDS:
        if key not in wanted:
            continue
        value = _get(model, key)
        if value is None:
            missing.append(f"{key}: {_scalar(wanted[key], '')}")
        elif isinstance(value, yaml.ScalarNode) and value.value != wanted[key]:
            replacement = _scalar(wanted[key], value.style or "")
            edits.append((value.start_mark.index, value.end_mark.index, replacement))
    if missing:
        if model.flow_style:
            end = model.end_mark.index - 1  # the closing brace
            edits.append((end, end, "".join(f", {field}" for field in missing)))
        else:
            first_key, _ = model.value[0]
            _, last_value = model.value[-1]
            indent = " " * first_key.start_mark.column
            end = last_value.end_mark.index
            edits.append((end, end, "".join(f"\n{indent}{field}" for field in missing)))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def _scalar(value: str, style: str) -> str:
    """`value` as a YAML string in the style the file used: plain where it reads back as
    the same string (a version 1.10 written plain would read back as a number), else
    double-quoted."""
    if style == "'" and "\n" not in value:
        return "'" + value.replace("'", "''") + "'"
    if style != '"':
        try:
            if yaml.safe_load(f"k: {value}") == {"k": value} and "#" not in value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value)  # a double-quoted YAML scalar
