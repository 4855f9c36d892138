"""`modelsync validate`: every problem of a directory of manifests, offline, as
`file:line: object: message` — the same loader the operator uses, plus the CRDs'
schemas and CEL rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelsync import schemas
from modelsync.load import LoadError, Source, load


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    object: str
    message: str

    def __str__(self) -> str:
        what = f" {self.object}:" if self.object else ""
        return f"{self.file}:{self.line}:{what} {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "object": self.object,
            "message": self.message,
        }


@dataclass
class Report:
    files: int = 0
    objects: int = 0
    errors: list[Finding] = field(default_factory=list)


def _finding(error: LoadError, root: Path) -> Finding:
    """Files are named as the user would reach them from where they ran the command."""
    return Finding(
        (root / error.source.file).as_posix(), error.source.line, error.object, error.message
    )


def check_path(path: Path) -> Report:
    root, relative = (path, "") if path.is_dir() else (path.parent, path.name)
    loaded = load(root, relative)
    report = Report(files=loaded.files, objects=len(loaded.objects))
    report.errors += [_finding(error, root) for error in loaded.errors]
    known = schemas.load_schemas()
    texts: dict[str, str] = {}
    for obj in loaded.objects:
        manifest = obj.manifest
        schema = known.get((manifest["apiVersion"], manifest["kind"]))
        if schema is None:
            continue  # not ours: its shape was checked by the loader, the server does the rest
        for problem in schemas.check(schema, manifest):
            text = texts.setdefault(obj.source.file, (root / obj.source.file).read_text())
            line = schemas.line_of(text, obj.source.line, problem.path)
            message = f"{problem.field}: {problem.message}" if problem.path else problem.message
            report.errors.append(
                _finding(LoadError(Source(obj.source.file, line), message, obj.description), root)
            )
    report.errors.sort(key=lambda f: (f.file, f.line))
    return report
