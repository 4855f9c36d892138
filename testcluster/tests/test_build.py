from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testcluster import build, versions

REPO = Path(__file__).resolve().parents[2]


def test_staging_modules_follow_the_kubernetes_minor() -> None:
    assert versions.staging_version("v1.37.2") == "v0.37.2"
    with pytest.raises(ValueError, match="unexpected Kubernetes version"):
        versions.staging_version("v2.0.0")


def test_binaries_report_their_real_versions() -> None:
    flags = versions.ldflags()
    assert f"k8s.io/component-base/version.gitVersion={versions.KUBERNETES}" in flags
    assert f"k8s.io/client-go/pkg/version.gitVersion={versions.KUBERNETES}" in flags
    assert f"helm.sh/helm/v4/internal/version.version={versions.HELM}" in flags


def test_go_mod_pins_the_versions_file() -> None:
    gomod = (build.GOBUILD_DIR / "go.mod").read_text()
    assert f"k8s.io/kubernetes {versions.KUBERNETES}" in gomod
    assert f"sigs.k8s.io/kwok {versions.KWOK}" in gomod
    assert f"helm.sh/helm/v4 {versions.HELM}" in gomod
    assert f"go.etcd.io/etcd/server/v3 {versions.ETCD}" in gomod
    assert f"k8s.io/api => k8s.io/api {versions.staging_version()}" in gomod


def fake_compiler(calls: list[Path]) -> build.Compiler:
    def compile_(go: str, env: dict[str, str], output: Path, toolchain: str, log: object) -> None:
        calls.append(output)
        (output / build.BINARY).write_bytes(b"#!/bin/sh\n")
        (output / build.BINARY).chmod(0o755)
        (output / build.PAUSE).write_bytes(b"#!/bin/sh\n")

    return compile_


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELSYNC_CACHE", str(tmp_path))
    return tmp_path


def test_a_build_is_cached_and_reused(cache: Path) -> None:
    calls: list[Path] = []
    first = build.ensure_binaries(io.StringIO(), compiler=fake_compiler(calls))
    second = build.ensure_binaries(io.StringIO(), compiler=fake_compiler(calls))
    assert first == second
    assert len(calls) == 1
    assert first.directory.parent == cache / "cluster"
    assert build.is_complete(first.directory)
    assert first.kubectl.resolve() == first.multicall.resolve()


def test_an_interrupted_build_is_swept_and_redone(cache: Path) -> None:
    def interrupted(
        go: str, env: dict[str, str], output: Path, toolchain: str, log: object
    ) -> None:
        (output / build.BINARY).write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build.ensure_binaries(io.StringIO(), compiler=interrupted)
    assert list((cache / "cluster").iterdir()) == [cache / "cluster" / "build.lock"]

    # A build killed outright (no chance to clean up) leaves a scratch directory.
    leftover = cache / "cluster" / f"{versions.KUBERNETES}-0123456789ab.partial-99999"
    leftover.mkdir()
    log = io.StringIO()
    calls: list[Path] = []
    binaries = build.ensure_binaries(log, compiler=fake_compiler(calls))
    assert not leftover.exists()
    assert "removing interrupted build" in log.getvalue()
    assert build.is_complete(binaries.directory)


def test_a_half_written_cache_is_not_trusted(cache: Path) -> None:
    calls: list[Path] = []
    binaries = build.ensure_binaries(io.StringIO(), compiler=fake_compiler(calls))
    # Truncate the binary behind the stamp's back, as a full disk might.
    binaries.multicall.write_bytes(b"")
    assert not build.is_complete(binaries.directory)
    log = io.StringIO()
    rebuilt = build.ensure_binaries(log, compiler=fake_compiler(calls))
    assert len(calls) == 2
    assert build.is_complete(rebuilt.directory)
    assert "removing unfinished build" in log.getvalue()


def test_a_failed_build_step_names_the_command_and_its_error() -> None:
    failing = [sys.executable, "-c", "print('main.go:3: undefined: boom'); raise SystemExit(2)"]
    with pytest.raises(build.BuildError) as failed:
        build.run_streaming(failing, dict(os.environ), io.StringIO(), phase="compiling")
    message = str(failed.value)
    assert "exit 2" in message
    assert " ".join(failing) in message
    assert "undefined: boom" in message


def test_a_missing_go_toolchain_stops_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path), "MODELSYNC_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-m", "testcluster", "up", "--root", str(tmp_path / "root")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: the Go toolchain is not installed")
    assert "install Go" in lines[0]


def test_a_new_build_replaces_builds_of_other_pins(cache: Path) -> None:
    old = cache / "cluster" / "v1.36.0-aaaaaaaaaaaa"
    old.mkdir(parents=True)
    (old / build.BINARY).write_bytes(b"old")
    binaries = build.ensure_binaries(io.StringIO(), compiler=fake_compiler([]))
    assert not old.exists()
    assert binaries.directory.exists()
