"""Build the standalone renderers (kustomize, helm) from Go modules, cached by version.

Each comes from its own wrapper module under `renderer_modules/<name>/` (a go.mod
whose `tool` line names the program, and the go.sum that pins it), not from the
multi-call cluster binary: the CLI and the operator image need them alone. The
result is `~/.cache/modelsync/tools/<name>-<version>/<name>`, built in a scratch
directory renamed into place once complete; a stamp records the hash of the
wrapper module, so a changed go.sum rebuilds. These keys are ours alone: nothing
here touches the cluster's cache directory or its build key.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from testcluster import build

MODULES = Path(__file__).resolve().parent / "renderer_modules"
# The product's pins, read as data: the harness never imports the product.
PINS_FILE = Path(__file__).resolve().parents[1] / "controller" / "modelsync" / "renderers.toml"
PINS = tomllib.loads(PINS_FILE.read_text())
STAMP = "BUILD-COMPLETE.json"


@dataclass(frozen=True)
class Tool:
    name: str
    version: str
    package: str
    ldflags: str = "-s -w"


TOOLS = (
    Tool("kustomize", PINS["kustomize"], "sigs.k8s.io/kustomize/kustomize/v5"),
    Tool(
        "helm",
        PINS["helm"],
        "helm.sh/helm/v4/cmd/helm",
        f"-s -w -X helm.sh/helm/v4/internal/version.version={PINS['helm']}",
    ),
)


def module_key(tool: Tool) -> str:
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((MODULES / tool.name / name).read_bytes())
    digest.update(tool.ldflags.encode())
    return digest.hexdigest()[:12]


def _complete(directory: Path, tool: Tool) -> bool:
    try:
        stamp = json.loads((directory / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return stamp.get("key") == module_key(tool) and (directory / tool.name).is_file()


def _check_pin(tool: Tool) -> None:
    """The wrapper module must require the version the code asks for."""
    text = (MODULES / tool.name / "go.mod").read_text()
    module = tool.package.rsplit("/cmd/", 1)[0]
    if f"{module} {tool.version}" not in text:
        raise build.BuildError(
            f"{MODULES / tool.name / 'go.mod'} does not require {module} {tool.version} "
            f"({PINS_FILE.name} names that version): run `go get -tool "
            f"{tool.package}@{tool.version}` there"
        )


def ensure_tool(tool: Tool, log: TextIO = sys.stderr) -> Path:
    """The path of `tool`'s binary, built first when the cache lacks it."""
    cache = build.cache_root()
    tools = cache / "tools"
    final = tools / f"{tool.name}-{tool.version}"
    if _complete(final, tool):
        return final / tool.name
    _check_pin(tool)
    env = build.go_environment(cache)
    env["GOTOOLCHAIN"] = "local"  # the wrapper modules declare a go line Go 1.26 meets
    go = build.find_go()
    with build.build_lock(tools):
        if _complete(final, tool):
            return final / tool.name
        scratch = tools / f"{final.name}.partial-{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        started = time.monotonic()
        print(f"[renderers] building {tool.name} {tool.version} (once)", file=log)
        try:
            result = subprocess.run(
                [
                    go,
                    "build",
                    "-ldflags",
                    tool.ldflags,
                    "-o",
                    str(scratch / tool.name),
                    tool.package,
                ],
                cwd=MODULES / tool.name,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise build.BuildError(
                    f"building {tool.name} failed in {MODULES / tool.name}:\n"
                    + "\n".join(result.stderr.splitlines()[-20:])
                )
            stamp = {
                "name": tool.name,
                "version": tool.version,
                "key": module_key(tool),
                "seconds": round(time.monotonic() - started, 1),
            }
            (scratch / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
            if final.exists():
                shutil.rmtree(final)
            scratch.rename(final)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        print(
            f"[renderers] built {tool.name} {tool.version} in {stamp['seconds']:.0f}s",
            file=log,
        )
    return final / tool.name


def ensure_renderers(log: TextIO = sys.stderr) -> dict[str, Path]:
    """Every renderer, by name."""
    return {tool.name: ensure_tool(tool, log) for tool in TOOLS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args(argv)
    for name, path in ensure_renderers().items():
        print(f"{name}={path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
