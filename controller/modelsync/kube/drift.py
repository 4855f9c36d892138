"""Which of the fields we apply differ in the live object. Pure.

We compare only what we would write: fields others add (an annotation, a
defaulted field, status) are not ours and never count as drift.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelsync.api.manifest import JsonValue, Manifest, digest

# What the API server compares when we apply: the rest of an object is not ours.
COMPARED_METADATA = ("labels", "annotations", "ownerReferences")


def _same_scalar(want: object, have: object) -> bool:
    if isinstance(want, bool) or isinstance(have, bool):
        return want is have
    if isinstance(want, int | float) and isinstance(have, int | float):
        return want == have
    return bool(want == have)


def _keyed(items: list[object]) -> dict[str, object] | None:
    """Lists of named objects (containers, env, ports, volumes) match by name."""
    named = [item for item in items if isinstance(item, dict) and "name" in item]
    if items and len(named) == len(items):
        return {str(item["name"]): item for item in named}
    return None


def differences(want: object, have: object, path: str = "") -> list[str]:
    """JSON paths at which `have` does not hold what `want` says (extra fields in
    `have` are fine). Empty when applying `want` would change nothing we own."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return [path or "."]
        found: list[str] = []
        for key, value in want.items():
            found += differences(value, have.get(key), f"{path}.{key}" if path else key)
        return found
    if isinstance(want, list):
        return _list_differences(want, have, path)
    return [] if _same_scalar(want, have) else [path]


def _list_differences(want: list[object], have: object, path: str) -> list[str]:
    """Lists of named items (containers, ports, env) by name; others by position."""
    if not isinstance(have, list):
        return [path]
    wanted, present = _keyed(want), _keyed(have)
    found: list[str] = []
    if wanted is not None and present is not None:
        for name, item in wanted.items():
            if name not in present:
                found.append(f"{path}[{name}]")
            else:
                found += differences(item, present[name], f"{path}[{name}]")
        return found
    if len(want) != len(have):
        return [path]
    for index, (item, other) in enumerate(zip(want, have, strict=True)):
        found += differences(item, other, f"{path}[{index}]")
    return found


def applied_part(manifest: Mapping[str, JsonValue]) -> Manifest:
    """The part of an object an apply of ours can change: its content (spec, or data,
    rules, ... for kinds without a spec) and some metadata; never status."""
    metadata = manifest.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    part: Manifest = {
        key: value
        for key, value in manifest.items()
        if key not in {"apiVersion", "kind", "metadata", "status"}
    }
    part["metadata"] = {key: metadata[key] for key in COMPARED_METADATA if key in metadata}
    return part


def fingerprint(manifest: Manifest) -> str:
    """A digest of what an apply of `manifest` writes (`applied_part`): equal for equal
    content whatever the key order; short, as one is kept per object served."""
    return digest(applied_part(manifest)).hex()


def out_of_band(last_held: str | None, wanted: str, *, settled: bool) -> bool:
    """Whether a difference about to be written back was made by someone else (drift),
    rather than by a change of what we want (a new spec, a canary's next size).

    `last_held`: the fingerprint of what the object last held of what we wanted (we
    wrote it, or found it there; None: nothing known, as after a restart); `wanted`:
    that of what we write now. Wanting the same, the object moved away from it: someone
    else's edit. Not knowing, `settled` says whether what we want was applied before
    and holds still (the spec applied and no canary resizing), so that a difference is
    not ours."""
    if last_held is not None:
        return last_held == wanted
    return settled
