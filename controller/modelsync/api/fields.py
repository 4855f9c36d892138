"""Reading the JSON of a resource into typed values: each reader names the field it
could not read. The API server has checked the object against the CRD, so an error
here means a CRD and its types disagree (a test walks both CRDs for that)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

Object = Mapping[str, object]


class FieldError(ValueError):
    """A field whose value is not of its type: `path` is where (spec.rollout.steps[0])."""

    def __init__(self, path: str, wanted: str, value: object) -> None:
        super().__init__(f"{path}: expected {wanted}, got {type(value).__name__} {value!r}")
        self.path = path


def obj(data: Object, key: str, path: str) -> Object:
    """The object at `key`, or an empty one where it is absent."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise FieldError(f"{path}.{key}", "an object", value)
    return value


def opt_obj(data: Object, key: str, path: str) -> Object | None:
    return obj(data, key, path) if data.get(key) is not None else None


def objects(data: Object, key: str, path: str) -> list[Object]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise FieldError(f"{path}.{key}", "a list", value)
    items: list[Object] = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise FieldError(f"{path}.{key}[{index}]", "an object", item)
        items.append(item)
    return items


def string(data: Object, key: str, path: str, default: str = "") -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise FieldError(f"{path}.{key}", "a string", value)
    return value


def opt_string(data: Object, key: str, path: str) -> str | None:
    return string(data, key, path) if data.get(key) is not None else None


def strings(data: Object, key: str, path: str) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise FieldError(f"{path}.{key}", "a list of strings", value)
    return tuple(str(item) for item in value)


def string_map(data: Object, key: str, path: str) -> dict[str, str]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise FieldError(f"{path}.{key}", "a map of strings", value)
    return {str(k): str(v) for k, v in value.items()}


def integer(data: Object, key: str, path: str, default: int = 0) -> int:
    value = data.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(f"{path}.{key}", "an integer", value)
    return value


def opt_integer(data: Object, key: str, path: str) -> int | None:
    return integer(data, key, path) if data.get(key) is not None else None


def number(data: Object, key: str, path: str, default: float = 0.0) -> float:
    value = data.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldError(f"{path}.{key}", "a number", value)
    return float(value)


def boolean(data: Object, key: str, path: str, default: bool) -> bool:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise FieldError(f"{path}.{key}", "true or false", value)
    return value


def int_or_string(data: Object, key: str, path: str) -> int | str | None:
    value = data.get(key)
    if value is None or (isinstance(value, int | str) and not isinstance(value, bool)):
        return value
    raise FieldError(f"{path}.{key}", "an integer or a string", value)


def quantities(data: Object, key: str, path: str) -> dict[str, int | str]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise FieldError(f"{path}.{key}", "a map of quantities", value)
    found: dict[str, int | str] = {}
    for name in value:
        quantity = int_or_string(value, name, f"{path}.{key}")
        if quantity is not None:
            found[str(name)] = quantity
    return found


@dataclass(frozen=True)
class StatusCondition:
    """One of status.conditions (the Kubernetes convention)."""

    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str
    message: str
    observed_generation: int | None
    last_transition_time: str


def conditions(data: Object, path: str) -> tuple[StatusCondition, ...]:
    return tuple(
        StatusCondition(
            type=string(item, "type", f"{path}.conditions[{index}]"),
            status=string(item, "status", f"{path}.conditions[{index}]"),
            reason=string(item, "reason", f"{path}.conditions[{index}]"),
            message=string(item, "message", f"{path}.conditions[{index}]"),
            observed_generation=opt_integer(item, "observedGeneration", path),
            last_transition_time=string(item, "lastTransitionTime", path),
        )
        for index, item in enumerate(objects(data, "conditions", path))
    )
