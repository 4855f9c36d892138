"""A kustomization read as kustomize v5.8.2 reads it, before kustomize runs.

kustomize decodes a kustomization with Go's encoding/json: a key names a field
whatever its case (`Resources:`, `RESOURCES:`, and `resources` spelled with the
long s, U+017F, which Go folds to s), the last of two spellings of one field wins,
and a key that names no field is an error. The same holds for the fields of a
generator, a patch and a replacement. So the inspection reads the file the same way:
every key folded to the field kustomize gives it, a field given twice refused, a key
that is no field refused, each field of kustomize's `types.Kustomization` handled
(what it names is checked) or refused; and kustomize is then given the mapping that
was checked, in its own spelling of each field, as JSON — never the tenant's bytes.

Pure: the text of one kustomization in; the checked mapping, the paths it names and
what is wrong (each at its line) out; and which paths kustomize would fetch or clone
rather than read (render checks the rest against the revision).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from modelsync.api.manifest import JsonValue
from modelsync.gitops import load as loadmod

# How each handled field is read. DATA: kustomize reads it as data (names, labels,
# images, selectors...): no file, no URL. BASES: paths of files, of directories holding
# a kustomization, or remote bases. FILES: paths of files. INLINE_OR_FILES: a path, or
# an inline patch (text holding a line break, or a `{...}` object). PATCHES: mappings
# whose `path` names a file. GENERATORS: mappings whose `files`, `envs` and `env` name
# files. REPLACEMENTS: mappings whose `path` names a file. OPENAPI: a map whose `path`
# names a file.
DATA = "data"
BASES = "bases"
FILES = "files"
INLINE_OR_FILES = "inline or files"
PATCHES = "patches"
GENERATORS = "generators"
REPLACEMENTS = "replacements"
OPENAPI = "openapi"

# Every json field of kustomize's types.Kustomization (sigs.k8s.io/kustomize/api
# v0.21.2, which kustomize v5.8.2 requires: types/kustomization.go, TypeMeta inline)
# is in HANDLED or REFUSED; tests/unit/gitops/test_kustomize_inspection.py reads the
# tags from that source and fails on a field that is neither.
HANDLED: dict[str, str] = {
    "apiVersion": DATA,
    "kind": DATA,
    "metadata": DATA,
    "openapi": OPENAPI,
    "namePrefix": DATA,
    "nameSuffix": DATA,
    "namespace": DATA,
    "commonLabels": DATA,
    "labels": DATA,
    "commonAnnotations": DATA,
    "patchesStrategicMerge": INLINE_OR_FILES,
    "patchesJson6902": PATCHES,
    "patches": PATCHES,
    "images": DATA,
    "imageTags": DATA,
    "replacements": REPLACEMENTS,
    "replicas": DATA,
    "vars": DATA,
    "sortOptions": DATA,
    "resources": BASES,
    "components": BASES,
    "crds": FILES,
    "bases": BASES,
    "configMapGenerator": GENERATORS,
    "secretGenerator": GENERATORS,
    "generatorOptions": DATA,
    "configurations": FILES,
    "buildMetadata": DATA,
}
_HELM = (
    "needs kustomize --enable-helm, which modelsync never runs; render the chart with "
    "spec.helm instead"
)
_PLUGINS = (
    "kustomize plugins are not run: a builtin plugin's configuration names files and URLs "
    "of its own (a ConfigMapGenerator's `files: [http://...]`); use the kustomization's "
    "own fields (configMapGenerator, secretGenerator, patches, labels, images, ...)"
)
REFUSED: dict[str, str] = {
    "helmGlobals": _HELM,
    "helmCharts": _HELM,
    "helmChartInflationGenerator": _HELM,
    "generators": _PLUGINS,
    "transformers": _PLUGINS,
    "validators": _PLUGINS,
}
# The fields of the items of PATCHES, GENERATORS and REPLACEMENTS, by their Go type
# (embedded structs' fields included, as Go promotes them); checked against the source
# by the same test.
# GeneratorArgs with KvPairSources, both embedded in ConfigMapArgs and SecretArgs.
_GENERATOR_ARGS = ("namespace", "name", "behavior", "literals", "files", "envs", "env", "options")
NESTED: dict[str, tuple[str, ...]] = {
    "Patch": ("path", "patch", "target", "options"),
    "ConfigMapArgs": _GENERATOR_ARGS,
    "SecretArgs": (*_GENERATOR_ARGS, "type"),
    "ReplacementField": ("source", "targets", "sourceValue", "path"),
}
_ITEM_TYPE = {
    "patches": "Patch",
    "patchesJson6902": "Patch",
    "configMapGenerator": "ConfigMapArgs",
    "secretGenerator": "SecretArgs",
    "replacements": "ReplacementField",
}


def fold(name: str) -> str:
    """`name` as Go's encoding/json compares it with a field's name (bytes.EqualFold):
    ASCII letters without case, and the two other runes whose case folding reaches an
    ASCII letter, the long s (U+017F) as s and the Kelvin sign (U+212A) as k. Any other non-ASCII
    rune matches no field of kustomize's, all ASCII."""
    return "".join(
        c.lower() if c.isascii() else {"\u017f": "s", "\u212a": "k"}.get(c, c) for c in name
    )


_VERSION = "v5.8.2"
_FIELDS = {fold(name): name for name in (*HANDLED, *REFUSED)}
_NESTED_FIELDS = {go: {fold(name): name for name in names} for go, names in NESTED.items()}
# A line break or another control character: Go's url.Parse refuses them, so an entry
# holding one is read as a path by one part of kustomize and as a URL by another.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")
# A URL's scheme as Go's url.Parse finds it: kustomize's file loader GETs http(s) ones.
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
# kustomize's git.NewRepoSpecFromURL, which it tries before any local directory.
_GIT_SCHEME = re.compile(r"(ssh|https|http|file)://", re.IGNORECASE)
_GIT_USER = re.compile(r"[A-Za-z][A-Za-z0-9-]*@")
# What JSON leaves as it is and YAML 1.1 reads otherwise (NEL, LS and PS are line
# breaks; C1 controls and a BOM are not printable): escaped, so that kustomize's YAML
# parser reads the strings of our JSON as written.
_YAML_BREAKS = re.compile(r"[\x7f-\x9f\u2028\u2029\ufeff]")


def fetched(reference: str) -> bool:
    """Whether kustomize's file loader would GET `reference` (its IsRemoteFile: an http
    or https scheme, which Go's url.Parse lowercases)."""
    found = _URL_SCHEME.match(reference)
    return found is not None and found[1].lower() in ("http", "https")


def cloned(reference: str) -> str:
    """The scheme kustomize would clone the base `reference` with ("file", "ssh",
    "https", "http"), or "" for a path: its git.NewRepoSpecFromURL, tried before any
    local directory (a directory `github.com/org/repo` of the revision is cloned)."""
    if reference.startswith("/"):
        return ""
    spec = reference.partition("?")[0]
    if spec[:5].lower() == "git::":
        spec = spec[5:]
    found = _GIT_SCHEME.match(spec)
    if found:
        return found[1].lower()
    if _GIT_USER.match(spec) or spec[:11].lower() in ("github.com/", "github.com:"):
        return "ssh"
    return ""


@dataclass(frozen=True)
class Reference:
    """A path the kustomization names: `field` as written (`configMapGenerator.files`)."""

    field: str
    path: str
    line: int
    # resources, bases, components: a directory holding a kustomization, or a remote
    # base, may stand here too.
    base: bool = False


@dataclass
class Checked:
    document: dict[str, JsonValue] = field(default_factory=dict)
    references: list[Reference] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, message)

    def text(self) -> str:
        """The checked mapping as kustomize is given it: JSON (which its YAML parser
        reads), with the characters YAML 1.1 would read differently escaped."""
        dumped = json.dumps(self.document, ensure_ascii=False, allow_nan=False, indent=1)
        return _YAML_BREAKS.sub(lambda found: f"\\u{ord(found[0]):04x}", dumped) + "\n"


class _KustomizationLoader(loadmod._StrictLoader):
    """The loader's strict YAML, with timestamps kept as the text they are (as Go's
    YAML-to-JSON conversion keeps them): a kustomization is JSON data."""


_KustomizationLoader.add_constructor(
    "tag:yaml.org,2002:timestamp", yaml.constructor.SafeConstructor.construct_yaml_str
)


# A key or an entry by its path of keys (as written) and indexes, and their lines.
Where = tuple[str | int, ...]
Lines = dict[Where, int]


def _lines(node: Node, path: Where = (), depth: int = 4) -> Lines:
    """The line of each key and entry down to `depth` (a generator's `files` entries)."""
    found: Lines = {}
    if depth == 0:
        return found
    children: list[tuple[str | int, int, Node]] = []
    if isinstance(node, MappingNode):
        children = [(str(k.value), k.start_mark.line + 1, v) for k, v in node.value]
    elif isinstance(node, SequenceNode):
        children = [(i, v.start_mark.line + 1, v) for i, v in enumerate(node.value)]
    for step, line, child in children:
        where = (*path, step)
        found.setdefault(where, line)
        for inner, inner_line in _lines(child, where, depth - 1).items():
            found.setdefault(inner, inner_line)
    return found


class _InvalidError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


def _parse(text: str) -> tuple[object, Lines]:
    """The document and the lines of its keys; _InvalidError where YAML refuses it."""
    loader = _KustomizationLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:  # (composed within the loader's node and depth limits)
            return {}, {}
        return loader.construct_document(node), _lines(node)
    except loadmod._TooBigError as error:
        raise _InvalidError(error.line, error.message) from None
    except yaml.MarkedYAMLError as error:
        found = loadmod._yaml_error("", error, text.count("\n") + 1)
        message = found.message.removeprefix("invalid YAML: ")
        # An error at the end of the file is on its last line, not the one after it.
        line = max(1, min(found.source.line, len(text.splitlines())))
        raise _InvalidError(line, f"invalid kustomization YAML: {message}; fix the file") from None
    except yaml.YAMLError as error:
        raise _InvalidError(1, f"invalid kustomization: {error}") from None
    except RecursionError:
        raise _InvalidError(1, f"nested deeper than {loadmod.MAX_DEPTH} levels") from None
    finally:
        loader.dispose()


def check(text: str) -> Checked:
    """The kustomization `text` as kustomize would read it, checked field by field."""
    checked = Checked()
    try:
        data, lines = _parse(text)
    except _InvalidError as error:
        checked.errors.append((error.line, error.message))
        return checked
    if data is None:
        data = {}
    if not isinstance(data, dict):
        checked.errors.append((1, "a kustomization must be a mapping (resources: ...)"))
        return checked
    _Reader(checked, lines).document(data)
    return checked


@dataclass
class _Reader:
    """Reads one parsed kustomization into `checked`: the document kustomize is given,
    what it names, what is wrong (at `lines`)."""

    checked: Checked
    lines: Lines

    def error(self, where: Where | int, message: str) -> None:
        line = where if isinstance(where, int) else self.lines.get(where, 1)
        self.checked.errors.append((line, message))

    def document(self, data: dict[object, object]) -> None:
        seen: dict[str, str] = {}
        for key, value in data.items():
            where: Where = (str(key),)
            name = _FIELDS.get(fold(key)) if isinstance(key, str) else None
            if name is None or not isinstance(key, str):
                self.error(
                    where,
                    f"{key}: not a field of a kustomization (kustomize {_VERSION} would "
                    "refuse it); fix the spelling or remove it",
                )
            elif name in seen:
                first = seen[name]
                self.error(
                    where,
                    f"{key}: the field {name} is given twice (also as {first!r} at line "
                    f"{self.lines.get((first,), 1)}), and kustomize would read only the "
                    "last: keep one",
                )
            elif name in REFUSED:
                seen[name] = key
                self.error(where, f"{key}: {REFUSED[name]}")
            else:
                seen[name] = key
                self.checked.document[name] = self.field(key, name, value)

    def field(self, key: str, name: str, value: object) -> JsonValue:
        """`value` of the field `name` (written `key`) as kustomize is given it."""
        how = HANDLED[name]
        if how == DATA or value is None:
            return self.json(key, value, (key,))
        if how == OPENAPI:
            if not isinstance(value, dict):
                self.error((key,), f"{key}: must be a mapping (path: ...)")
                return None
            if value.get("path") is not None:  # a Go map: its keys are not folded
                self.path(key, value["path"], (key, "path"))
            return self.json(key, value, (key,))
        if not isinstance(value, list):
            self.error((key,), f"{key}: must be a list")
            return None
        if how in (PATCHES, GENERATORS, REPLACEMENTS):
            return [self.item(key, name, entry, (key, index)) for index, entry in enumerate(value)]
        return [
            str(entry)
            for index, entry in enumerate(value)
            if self.listed(key, how, entry, (key, index))
        ]

    def listed(self, key: str, how: str, entry: object, where: Where) -> bool:
        """Whether an entry of a list of paths is kept (a path, or an inline patch)."""
        # kustomize reads a patchesStrategicMerge entry as an inline patch first, then
        # as a path: text holding a line break, or an object, is a patch (data).
        inline = isinstance(entry, str) and ("\n" in entry or entry.lstrip().startswith("{"))
        if how == INLINE_OR_FILES and inline:
            return True
        return self.path(key, entry, where, base=how == BASES)

    def item(self, key: str, name: str, entry: object, where: Where) -> JsonValue:
        """One patch, generator or replacement: its keys folded to its Go type's fields."""
        if not isinstance(entry, dict):
            self.error(where, f"{key}: each entry must be a mapping")
            return None
        fields = _NESTED_FIELDS[_ITEM_TYPE[name]]
        item: dict[str, JsonValue] = {}
        spelled: dict[str, str] = {}
        for inner, value in entry.items():
            at = (*where, str(inner))
            canonical = fields.get(fold(inner)) if isinstance(inner, str) else None
            if canonical is None:
                self.error(
                    at, f"{key}: {inner!r} is not a field of {name} entries; fix the spelling"
                )
                continue
            if canonical in spelled:
                self.error(
                    at,
                    f"{key}: {inner!r} and {spelled[canonical]!r} are both its {canonical}, "
                    "and kustomize would read only the last: keep one",
                )
                continue
            spelled[canonical] = str(inner)
            kept, item[canonical] = self.entry_field(key, str(inner), canonical, value, at)
            if not kept:
                del item[canonical]
        return item

    def entry_field(
        self, key: str, inner: str, canonical: str, value: object, where: Where
    ) -> tuple[bool, JsonValue]:
        """(kept?, value) of one field of a patch, generator or replacement."""
        written = f"{key}.{inner}"
        if value is None:
            return True, None
        if canonical in ("path", "env"):
            # A patch's or a replacement's path is named by its list, as it always was.
            return self.path(key if canonical == "path" else written, value, where), str(value)
        if canonical in ("files", "envs"):
            return True, self.sources(written, canonical, value, where)
        return True, self.json(written, value, where)

    def sources(self, written: str, canonical: str, value: object, where: Where) -> JsonValue:
        """A generator's `files` (`key=path` or `path`) or `envs` (paths)."""
        if not isinstance(value, list):
            self.error(where, f"{written}: must be a list")
            return None
        kept: list[JsonValue] = []
        for index, entry in enumerate(value):
            path = entry
            if canonical == "files" and isinstance(entry, str):
                # As kustomize's ParseFileSource: no `=`, the path; one inside, key=path.
                separators = entry.count("=")
                if separators > 1 or (separators == 1 and (entry[0] == "=" or entry[-1] == "=")):
                    self.error(
                        (*where, index),
                        f"{written}: {entry!r} must be `path` or `key=path`, one `=` at most",
                    )
                    continue
                path = entry.partition("=")[2] if separators else entry
            if self.path(written, path, (*where, index)):
                kept.append(entry)
        return kept

    def path(self, written: str, path: object, where: Where, *, base: bool = False) -> bool:
        """A path to check against the revision (render does), unless it cannot be one."""
        if not isinstance(path, str):
            self.error(where, f"{written}: {path!r} is not a path (a string)")
            return False
        if _CONTROL.search(path):
            self.error(
                where,
                f"{written}: {path!r} holds a line break or a control character; a path "
                "is one line: fix the entry",
            )
            return False
        self.checked.references.append(Reference(written, path, self.lines.get(where, 1), base))
        return True

    def json(self, written: str, value: object, where: Where) -> JsonValue:
        """Plain data, as JSON has it (what kustomize gets from YAML anyway)."""
        try:
            # Through JSON text: keys become strings as Go's YAML-to-JSON makes them (true).
            plain: JsonValue = json.loads(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError):
            self.error(
                where, f"{written}: a value that is not plain data (a YAML tag?); write plain data"
            )
            return None
        return plain
