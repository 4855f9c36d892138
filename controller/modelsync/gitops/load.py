"""Load: the Kubernetes objects of one revision, read from a checked-out snapshot.

Reads every .yaml, .yml and .json file under `path`, recursively, each possibly
holding several documents. Refuses what could hurt or mislead: a path or a
symlink leading out of the repository, a file too large, YAML tags (only plain
data), duplicate keys (Kubernetes is strict about them too), alias bombs and
very deep nesting. Every error names the file and line.

What is wrong with the snapshot rather than with the revision (the snapshot gone, a
directory or file listed and then gone) raises SnapshotChangedError: never a revision
that lacks what the walk lost, which a sync with prune on would apply as the whole.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import pickle
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from yaml.error import Mark
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

EXTENSIONS = (".yaml", ".yml", ".json")
# Directories that are not plain manifests (rendering.py renders them when named). Each
# met while reading plain manifests is reported once, at its marker file, and nothing
# under it is read: half a chart or an unrendered overlay is never applied.
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
HELM_CHART_FILE = "Chart.yaml"
KUSTOMIZE_MESSAGE = (
    "a Kustomize directory inside spec.path: modelsync renders a kustomization only at "
    "spec.path itself; point spec.path (or `modelsync validate`) at this directory"
)
HELM_CHART_MESSAGE = (
    "a Helm chart: set spec.helm (chart: its directory, relative to the repository root) "
    "to render it with helm template, or point spec.path at plain manifests"
)
# spec.validation's sample bodies (gitops/samples.py inlines them): JSON, but never manifests.
SAMPLE_BODY_SUFFIX = ".body.json"
TEMPLATE_HINT = " (this looks like a template, {{ ... }}: render it first)"
MAX_FILE_BYTES = 1 << 20  # 1 MiB: a model file is a few KiB
MAX_FILES = 10_000
MAX_DEPTH = 64
MAX_NODES = 100_000  # per document, after alias expansion
# What one value costs in memory once constructed, beyond its text (a str, an int, a
# slot in its list or dict; measured: 60-90 bytes), for the loaded budget below.
NODE_BYTES = 80
# What the objects of one revision may cost in memory, estimated (NODE_BYTES a value,
# plus the text of each): a 10,000-model revision weighs ~20 MiB; one sync holds it
# while it runs (`--workers` at once), so it is what a revision can make the operator
# hold, whatever its bytes on disk.
MAX_LOADED_BYTES = 64 << 20


@dataclass(frozen=True)
class Source:
    """Where an object was written: file relative to the repository root, and line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class RevisionError:
    """What is wrong with a revision, at its file and line: found reading it (load,
    render), by policy (validate), or refused by the API server's dry run or apply."""

    source: Source
    message: str
    object: str = ""
    # The API server refused the writer (RBAC, 403): the account's permissions, not the
    # content, may be what is wrong, and a RoleBinding may mend it without a new commit.
    forbidden: bool = False

    def __str__(self) -> str:
        what = f" {self.object}:" if self.object else ""
        return f"{self.source}:{what} {self.message}"


@dataclass(frozen=True)
class LoadedObject:
    manifest: dict[str, Any]
    source: Source

    @property
    def description(self) -> str:
        meta = self.manifest.get("metadata") or {}
        namespace = f"{meta['namespace']}/" if meta.get("namespace") else ""
        return f"{self.manifest.get('kind', '?')} {namespace}{meta.get('name', '?')}"


@dataclass
class Loaded:
    objects: list[LoadedObject] = field(default_factory=list)
    errors: list[RevisionError] = field(default_factory=list)
    files: int = 0
    # What the objects are estimated to cost in memory (bytes): the loaded budget.
    weight: int = 0

    def over_budget(self, source: Source, limit: int = MAX_LOADED_BYTES) -> bool:
        """Whether the objects so far weigh more than `limit`: then an error at `source`
        (the file where it went over) and the caller reads no further."""
        if self.weight <= limit:
            return False
        self.errors.append(
            RevisionError(
                source,
                f"the objects read so far would take more than {limit >> 20} MiB of the "
                f"operator's memory ({self.weight >> 20} MiB at this file); the rest of the "
                "revision is not read: split spec.path into several ModelSyncs",
            )
        )
        return True


# libyaml's parser when PyYAML was built with it (it is, from PyPI): ten times faster.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _TooBigError(Exception):
    def __init__(self, mark: Mark, message: str) -> None:
        super().__init__(message)
        self.line = mark.line + 1
        self.message = message


class _StrictLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """SafeLoader that refuses duplicate keys, and composes each document itself from
    the parser's events, counting its nodes (aliases expanded) and its depth as they
    come: a document over MAX_NODES or MAX_DEPTH is refused with no more than MAX_NODES
    nodes ever built. (libyaml's composer builds the whole document before anything can
    count it: 150 MiB for 1 MiB of `[0,0,...]`.) `weight` estimates what the documents
    composed so far cost once constructed."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.anchors: dict[str, Node] = {}
        self.weight = 0

    def check_node(self) -> bool:
        if self.check_event(StreamStartEvent):
            self.get_event()
        return not self.check_event(StreamEndEvent)

    def get_node(self) -> Node | None:
        if self.check_event(StreamEndEvent):
            return None
        return self.compose_document()

    def get_single_node(self) -> Node | None:
        self.get_event()  # the stream's start
        node = None if self.check_event(StreamEndEvent) else self.compose_document()
        if not self.check_event(StreamEndEvent):
            event = self.get_event()
            raise yaml.composer.ComposerError(
                "expected a single document in the stream",
                None if node is None else node.start_mark,
                "but found another document",
                event.start_mark,
            )
        self.get_event()
        return node

    def compose_document(self) -> Node:
        self.get_event()  # the document's start
        node = self._compose()
        self.get_event()  # its end
        self.anchors = {}
        return node

    def _compose(self) -> Node:  # noqa: C901 - one loop over the events of a document
        """The document's root node, iteratively (no recursion however deep it nests)."""
        get, resolve, anchors = self.get_event, self.resolve, self.anchors
        # What each anchor's subtree costs where an alias repeats it: (nodes, height).
        anchored: dict[str, tuple[int, int]] = {}
        # Open collections: [node, anchor, nodes before it, deepest level inside it].
        stack: list[list[Any]] = []
        nodes = 0
        node: Node
        while True:
            event = get()
            kind = type(event)
            depth = len(stack)
            if kind is SequenceEndEvent or kind is MappingEndEvent:
                node, anchor, before, deepest = stack.pop()
                node.end_mark = event.end_mark
                if kind is MappingEndEvent:
                    flat = node.value
                    node.value = list(zip(flat[::2], flat[1::2], strict=True))
                if anchor is not None:
                    anchored[anchor] = (nodes - before, deepest - depth)
                if stack:
                    stack[-1][3] = max(stack[-1][3], deepest)
            else:
                if depth > MAX_DEPTH:
                    raise _TooBigError(event.start_mark, f"nested deeper than {MAX_DEPTH} levels")
                anchor = event.anchor
                if kind is AliasEvent:
                    if anchor not in anchors:
                        raise yaml.composer.ComposerError(
                            None, None, f"found undefined alias {anchor!r}", event.start_mark
                        )
                    if anchor not in anchored:
                        raise _TooBigError(
                            event.start_mark, f"the alias *{anchor} is inside its own anchor"
                        )
                    size, height = anchored[anchor]
                    nodes += size
                    if depth + height > MAX_DEPTH:
                        raise _TooBigError(
                            event.start_mark, f"nested deeper than {MAX_DEPTH} levels"
                        )
                    node, height = anchors[anchor], depth + height
                else:
                    nodes += 1
                    if anchor is not None and anchor in anchors:
                        raise yaml.composer.ComposerError(
                            f"found duplicate anchor {anchor!r}; first occurrence",
                            anchors[anchor].start_mark,
                            "second occurrence",
                            event.start_mark,
                        )
                    tag = event.tag
                    if kind is ScalarEvent:
                        if tag is None or tag == "!":
                            tag = resolve(ScalarNode, event.value, event.implicit)
                        # No end mark: nothing reads where a value ends (one object less).
                        node = ScalarNode(tag, event.value, event.start_mark, None, event.style)
                        self.weight += len(event.value)
                    else:
                        mapping = kind is MappingStartEvent
                        node_kind = MappingNode if mapping else SequenceNode
                        if tag is None or tag == "!":
                            tag = resolve(node_kind, None, event.implicit)
                        node = node_kind(tag, [], event.start_mark, None, event.flow_style)
                    if anchor is not None:
                        anchors[anchor] = node
                        if kind is ScalarEvent:
                            anchored[anchor] = (1, 0)
                    height = depth
                if nodes > MAX_NODES:
                    raise _TooBigError(
                        event.start_mark, f"more than {MAX_NODES} values once aliases are expanded"
                    )
                if kind is SequenceStartEvent or kind is MappingStartEvent:
                    stack.append([node, anchor, nodes - 1, depth])
                    continue
                if stack:
                    stack[-1][3] = max(stack[-1][3], height)
            if not stack:
                self.weight += nodes * NODE_BYTES
                return node
            stack[-1][0].value.append(node)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, list | dict):
                # `{{ .Values.x }}: y` parses as a mapping whose key is a mapping.
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"a key is a {'list' if isinstance(key, list) else 'mapping'}, "
                    "not a plain value",
                    key_node.start_mark,
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


class SnapshotChangedError(Exception):
    """The snapshot changed under the loader (it, or a directory or file of it, vanished
    between listing and reading): the cache's fault, not the revision's. An error of the
    environment: the sync is tried again, nothing of this attempt is applied or pruned."""


def _vanished(root: Path, error: OSError) -> SnapshotChangedError:
    where = Path(str(error.filename or root))
    inside = where.is_relative_to(root) and where != root
    relative = where.relative_to(root).as_posix() if inside else str(where)
    return SnapshotChangedError(
        f"{relative}: {error.strerror or error} while reading the revision's snapshot "
        "(it changed under the reader); the sync is tried again"
    )


def resolve_path(root: Path, path: str) -> Path:
    """`path` inside the repository at `root`; ValueError if it leaves it."""
    relative = PurePosixPath(path.strip() or ".")
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"path {path!r} must be relative to the repository and contain no '..'")
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ValueError(f"path {path!r} leads out of the repository (through a symlink)")
    return target


def _files(root: Path, directory: Path, errors: list[RevisionError]) -> Iterator[Path]:
    real_root = root.resolve()

    def lost(error: OSError) -> None:  # os.walk would skip the directory it cannot list
        raise _vanished(root, error) from error

    for base, dirs, names in os.walk(directory, followlinks=False, onerror=lost):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        marker = next((n for n in (*KUSTOMIZATION_FILES, HELM_CHART_FILE) if n in names), None)
        if marker is not None:
            message = HELM_CHART_MESSAGE if marker == HELM_CHART_FILE else KUSTOMIZE_MESSAGE
            relative = (Path(base) / marker).relative_to(root).as_posix()
            errors.append(RevisionError(Source(relative, 1), message))
            dirs[:] = []
            continue
        for name in sorted(names):
            file = Path(base) / name
            if not name.endswith(EXTENSIONS) or name.endswith(SAMPLE_BODY_SUFFIX):
                continue
            relative = file.relative_to(root).as_posix()
            if file.is_symlink() and not file.exists():
                errors.append(
                    RevisionError(
                        Source(relative, 1),
                        "symlink points to nothing; replace it with the file itself",
                    )
                )
                continue
            if file.is_symlink() and not file.resolve().is_relative_to(real_root):
                errors.append(
                    RevisionError(
                        Source(relative, 1),
                        "symlink points outside the repository; replace it with the file itself",
                    )
                )
                continue
            yield file
        for name in dirs:
            link = Path(base) / name
            if link.is_symlink() and not link.resolve().is_relative_to(real_root):
                errors.append(
                    RevisionError(
                        Source(link.relative_to(root).as_posix(), 1),
                        "symlinked directory points outside the repository",
                    )
                )
        dirs[:] = [d for d in dirs if not (Path(base) / d).is_symlink()]


def _documents(text: str, relative: str, loaded: Loaded) -> None:  # noqa: C901 - one YAML stream's bounds and errors
    if relative.endswith(".json"):
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicate_pairs)
        except json.JSONDecodeError as error:
            loaded.errors.append(
                RevisionError(Source(relative, error.lineno), f"invalid JSON: {error.msg}")
            )
            return
        except _DuplicateKeyError as error:
            loaded.errors.append(RevisionError(Source(relative, 1), str(error)))
            return
        values = _values(data)
        if values > MAX_NODES:
            loaded.errors.append(
                RevisionError(Source(relative, 1), f"more than {MAX_NODES} values")
            )
            return
        loaded.weight += values * NODE_BYTES + len(text)
        items = (
            data.get("items") if isinstance(data, dict) and data.get("kind") == "List" else [data]
        )
        for item in items or []:
            _accept(item, Source(relative, 1), loaded)
        return
    loader = _StrictLoader(text)
    try:
        while loader.check_node():
            try:
                node = loader.get_node()
            except _TooBigError as error:
                # The rest of the file is not read: its events would cost as much again.
                loaded.errors.append(RevisionError(Source(relative, error.line), error.message))
                break
            if node is None:
                continue
            line = node.start_mark.line + 1
            try:
                data = loader.construct_document(node)
            except yaml.constructor.ConstructorError as error:
                # One bad document; the parser can still go on to the next one.
                loaded.errors.append(_yaml_error(relative, error, template="{{" in text))
                continue
            if data is not None:
                _accept(data, Source(relative, line), loaded)
    except yaml.MarkedYAMLError as error:
        loaded.errors.append(
            _yaml_error(relative, error, text.count("\n") + 1, template="{{" in text)
        )
    except yaml.YAMLError as error:  # the reader's: a character YAML may not hold
        loaded.errors.append(RevisionError(Source(relative, 1), f"invalid YAML: {error}"))
    except RecursionError:  # the YAML parser itself recurses on nesting
        loaded.errors.append(
            RevisionError(Source(relative, 1), f"nested deeper than {MAX_DEPTH} levels")
        )
    finally:
        loaded.weight += loader.weight
        loader.dispose()


def _yaml_error(
    relative: str, error: yaml.MarkedYAMLError, lines: int = 0, *, template: bool = False
) -> RevisionError:
    mark = error.problem_mark or error.context_mark
    at_end = lines > 0 and mark is not None and mark.line + 1 >= lines
    if error.context_mark is not None and at_end:
        mark = error.context_mark  # where the unclosed thing began, not the end of the file
    line = mark.line + 1 if mark is not None else 1
    problem = error.problem or "invalid YAML"
    if "could not determine a constructor for the tag" in problem:
        problem = "YAML tags are not allowed; write plain data"
    return RevisionError(
        Source(relative, line), f"invalid YAML: {problem}" + (TEMPLATE_HINT if template else "")
    )


def _values(data: Any) -> int:
    """How many values a JSON document holds (keys too), counted without recursion."""
    count, pending = 0, [data]
    while pending:
        item = pending.pop()
        count += 1
        if isinstance(item, dict):
            count += len(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return count


class _DuplicateKeyError(ValueError):
    pass


def _no_duplicate_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _accept(data: Any, source: Source, loaded: Loaded) -> None:
    if not isinstance(data, dict):
        loaded.errors.append(
            RevisionError(
                source,
                "not a Kubernetes object (expected a mapping "
                "with apiVersion, kind and metadata.name)",
            )
        )
        return
    missing = [key for key in ("apiVersion", "kind") if not isinstance(data.get(key), str)]
    name = (
        (data.get("metadata") or {}).get("name") if isinstance(data.get("metadata"), dict) else None
    )
    if not isinstance(name, str) or not name:
        missing.append("metadata.name")
    if missing:
        loaded.errors.append(
            RevisionError(source, f"not a Kubernetes object: missing {', '.join(missing)}")
        )
        return
    loaded.objects.append(LoadedObject(data, source))


def load(root: Path, path: str = "") -> Loaded:
    """Every object under `path` of the snapshot at `root`, or the errors that stop it."""
    loaded = Loaded()
    if not root.is_dir():  # not an empty revision: no revision at all
        raise _vanished(root, FileNotFoundError(2, "the snapshot is gone", str(root)))
    root = root.resolve()
    try:
        directory = resolve_path(root, path)
    except ValueError as error:
        loaded.errors.append(RevisionError(Source(path or ".", 1), str(error)))
        return loaded
    if not directory.exists():
        return loaded  # an empty revision: the caller decides whether that may prune
    candidates = [directory] if directory.is_file() else _files(root, directory, loaded.errors)
    for file in candidates:
        relative = file.relative_to(root).as_posix()
        loaded.files += 1
        if loaded.files > MAX_FILES:
            loaded.errors.append(RevisionError(Source(relative, 1), f"more than {MAX_FILES} files"))
            break
        text = _read(file, relative, loaded.errors, root)
        if text is None:
            continue
        _documents_cached(text, relative, loaded)
        if loaded.over_budget(Source(relative, 1)):
            break
    return loaded


def _read(file: Path, relative: str, errors: list[RevisionError], root: Path) -> str | None:
    """The text of one file under the per-file limit, or None and why not in `errors`;
    a file listed, then gone, is the snapshot changing under the reader (raised)."""
    try:
        size = file.stat().st_size
    except FileNotFoundError as error:  # listed, then gone (a dangling link is named above)
        raise _vanished(root, error) from error
    except OSError as error:  # a symlink loop
        errors.append(RevisionError(Source(relative, 1), f"cannot be read: {error.strerror}"))
        return None
    if size > MAX_FILE_BYTES:
        errors.append(
            RevisionError(
                Source(relative, 1),
                f"file is {size} bytes; the limit is {MAX_FILE_BYTES} (split it)",
            )
        )
        return None
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        errors.append(
            RevisionError(Source(relative, 1), "not UTF-8 text (a binary file?); remove it")
        )
        return None
    except FileNotFoundError as error:
        raise _vanished(root, error) from error
    except OSError as error:
        errors.append(RevisionError(Source(relative, 1), f"cannot be read: {error.strerror}"))
        return None
    if "\x00" in text:
        errors.append(
            RevisionError(Source(relative, 1), "a binary file (it holds NUL bytes); remove it")
        )
        return None
    return text


# Parsed files by path and content: a commit that changes one file of a thousand parses
# one file. Each is kept as the pickle of what was parsed (a few times smaller than the
# objects, and counted in bytes: the cache holds at most _PARSED_BYTES however dense the
# files), and each hit unpickles objects of its own, so callers may change what they get.
@dataclass(frozen=True)
class _Parsed:
    objects: bytes  # pickle of [(manifest, source), ...]
    errors: tuple[RevisionError, ...]
    weight: int


_PARSED: collections.OrderedDict[tuple[str, str], _Parsed] = collections.OrderedDict()
_PARSED_BYTES = 32 << 20
_parsed_size = 0
_parsed_lock = threading.Lock()


def _remember(key: tuple[str, str], parsed: _Parsed) -> None:
    global _parsed_size
    with _parsed_lock:
        if key in _PARSED or len(parsed.objects) > _PARSED_BYTES // 4:
            return
        _PARSED[key] = parsed
        _parsed_size += len(parsed.objects)
        while _parsed_size > _PARSED_BYTES:
            _, dropped = _PARSED.popitem(last=False)
            _parsed_size -= len(dropped.objects)


def _documents_cached(text: str, relative: str, loaded: Loaded) -> None:
    key = (relative, hashlib.sha256(text.encode()).hexdigest())
    with _parsed_lock:
        found = _PARSED.get(key)
        if found is not None:
            _PARSED.move_to_end(key)
    if found is not None:
        # Ours alone wrote these bytes (never a tenant), so unpickling them is safe.
        pairs: list[tuple[dict[str, Any], Source]] = pickle.loads(found.objects)  # noqa: S301
        loaded.objects += [LoadedObject(manifest, source) for manifest, source in pairs]
        loaded.errors += found.errors
        loaded.weight += found.weight
        return
    parsed = Loaded()
    try:
        _documents(text, relative, parsed)
    except Exception as error:  # the loader never raises on content
        parsed = Loaded(errors=[RevisionError(Source(relative, 1), f"cannot be parsed: {error}")])
    loaded.objects += parsed.objects
    loaded.errors += parsed.errors
    loaded.weight += parsed.weight
    try:
        pickled = pickle.dumps(
            [(o.manifest, o.source) for o in parsed.objects], protocol=pickle.HIGHEST_PROTOCOL
        )
    except (pickle.PicklingError, RecursionError, TypeError):  # pragma: no cover - plain data
        return
    _remember(key, _Parsed(pickled, tuple(parsed.errors), parsed.weight))
