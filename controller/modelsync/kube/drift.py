"""Which of the fields we apply differ in the live object. Pure.

We compare only what we would write: fields others add (an annotation, a
defaulted field, status) are not ours and never count as drift.
"""

from __future__ import annotations

from typing import Any

# What the API server compares when we apply: the rest of an object is not ours.
COMPARED_METADATA = ("labels", "annotations", "ownerReferences")


def _same_scalar(want: Any, have: Any) -> bool:
    if isinstance(want, bool) or isinstance(have, bool):
        return want is have
    if isinstance(want, int | float) and isinstance(have, int | float):
        return want == have
    return bool(want == have)


def _keyed(items: list[Any]) -> dict[str, Any] | None:
    """Lists of named objects (containers, env, ports, volumes) match by name."""
    if items and all(isinstance(item, dict) and "name" in item for item in items):
        return {str(item["name"]): item for item in items}
    return None


def differences(want: Any, have: Any, path: str = "") -> list[str]:
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
        if not isinstance(have, list):
            return [path]
        wanted, present = _keyed(want), _keyed(have)
        if wanted is not None and present is not None:
            found = []
            for name, item in wanted.items():
                if name not in present:
                    found.append(f"{path}[{name}]")
                else:
                    found += differences(item, present[name], f"{path}[{name}]")
            return found
        if len(want) != len(have):
            return [path]
        found = []
        for index, (item, other) in enumerate(zip(want, have, strict=True)):
            found += differences(item, other, f"{path}[{index}]")
        return found
    return [] if _same_scalar(want, have) else [path]


def applied_part(manifest: dict[str, Any]) -> dict[str, Any]:
    """The part of an object an apply of ours can change: its content (spec, or data,
    rules, ... for kinds without a spec) and some metadata; never status."""
    metadata = manifest.get("metadata") or {}
    part: dict[str, Any] = {
        key: value
        for key, value in manifest.items()
        if key not in {"apiVersion", "kind", "metadata", "status"}
    }
    part["metadata"] = {key: metadata[key] for key in COMPARED_METADATA if key in metadata}
    return part
