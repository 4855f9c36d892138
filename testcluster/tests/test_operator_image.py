"""The Dockerfile and the local builder (testcluster/operator_image.py) make the same
image: one package list, one lock, one user, one environment and entrypoint. Docker
cannot run here, so the Dockerfile is read, not built."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import yaml

from testcluster import operator_image

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
PACKAGES = "images/operator/packages.txt"
LOCK = "images/operator/requirements.lock"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments out."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


def final_stage(text: str) -> list[tuple[str, str]]:
    steps = instructions(text)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_stage_is_bookworm_slim_with_debians_python() -> None:
    steps = instructions(DOCKERFILE.read_text())
    bases = [args.split()[0] for keyword, args in steps if keyword == "FROM"]
    # The first stage only compiles kustomize and helm (issue 21); their binaries are copied.
    assert bases == ["golang:1.26-bookworm", "debian:bookworm-slim", "debian:bookworm-slim"]
    runs = " ".join(args for keyword, args in steps if keyword == "RUN")
    assert "python3 -m venv" in runs
    assert "pip install" in runs


def test_apt_installs_exactly_the_package_list() -> None:
    for stage_steps in (instructions(DOCKERFILE.read_text()), final_stage(DOCKERFILE.read_text())):
        copies = [args for keyword, args in stage_steps if keyword == "COPY"]
        assert f"{PACKAGES} /tmp/packages.txt" in copies
    for keyword, args in instructions(DOCKERFILE.read_text()):
        if keyword != "RUN" or "apt-get install" not in args:
            continue
        # The packages come from the list alone: the install names none of its own.
        assert "sed -e 's/#.*//' /tmp/packages.txt | xargs apt-get install" in args
        for command in args.split("&&"):
            if "apt-get install" in command:
                words = shlex.split(command.split("apt-get install", 1)[1])
                assert all(word.startswith("-") for word in words), command


def test_the_package_list_holds_what_the_operator_runs() -> None:
    names = operator_image.package_list()
    # git and ssh (fetch), prlimit (util-linux: fetch's bounds), Debian's python3 and venv.
    for needed in ("git", "openssh-client", "ca-certificates", "python3", "python3-venv"):
        assert needed in names
    assert "util-linux" in names
    assert operator_image.PACKAGES_FILE == ROOT / PACKAGES


def test_packages_reads_one_name_a_line_without_comments() -> None:
    text = "# the list\ngit\n\n  python3  # Debian's 3.11\n#ssh\n"
    assert operator_image.packages(text) == ("git", "python3")


def test_the_venv_is_the_lock_installed_with_hashes_then_our_wheel_alone() -> None:
    steps = final_stage(DOCKERFILE.read_text())
    copies = [args for keyword, args in steps if keyword == "COPY"]
    assert f"{LOCK} /tmp/requirements.lock" in copies
    runs = [args for keyword, args in steps if keyword == "RUN"]
    lock_install = [run for run in runs if "-r /tmp/requirements.lock" in run]
    assert len(lock_install) == 1
    for flag in ("--require-hashes", "--no-deps", "--only-binary=:all:", "/venv/bin/pip install"):
        assert flag in lock_install[0]
    # Our wheel comes last and alone: a code change rebuilds only that layer.
    assert "--no-deps" in runs[-1]
    assert "/tmp/wheels/*.whl" in runs[-1]


def test_the_lock_pins_every_runtime_dependency_of_pyproject_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock = (ROOT / LOCK).read_text()
    pinned = {normalized(m) for m in re.findall(r"^([A-Za-z0-9_.-]+)==", lock, re.MULTILINE)}
    for requirement in project["dependencies"]:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement)
        assert name is not None
        assert normalized(name.group(0)) in pinned, f"{requirement}: `{LOCK}` is stale"
    blocks = [block for block in lock.split("\n\n") if "==" in block]
    assert all("--hash=sha256:" in block for block in blocks)


def test_user_environment_and_entrypoint_match_the_builder_and_the_chart() -> None:
    steps = final_stage(DOCKERFILE.read_text())
    users = [args for keyword, args in steps if keyword == "USER"]
    assert users == [operator_image.USER]
    # The same account as the builder's: ssh wants a passwd entry for its uid.
    assert " ".join(operator_image.USERADD) in " ".join(
        args for keyword, args in steps if keyword == "RUN"
    )
    values = yaml.safe_load((ROOT / "helm/modelsync/values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == operator_image.UID
    env = " ".join(args for keyword, args in steps if keyword == "ENV")
    assert sorted(shlex.split(env)) == sorted(operator_image.ENV)
    entrypoint = [json.loads(args) for keyword, args in steps if keyword == "ENTRYPOINT"]
    cmd = [json.loads(args) for keyword, args in steps if keyword == "CMD"]
    assert entrypoint == [list(operator_image.ENTRYPOINT)]
    assert cmd == [list(operator_image.CMD)]
    deployment = (ROOT / "helm/modelsync/templates/deployment.yaml").read_text()
    # HOME is where the chart mounts its writable git-cache emptyDir.
    assert f"mountPath: {operator_image.HOME}}}" in deployment
    assert f"--git-cache-dir={operator_image.HOME}" in deployment


def test_inside_resolves_the_images_symlinks_within_its_root(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "var").mkdir()
    (tmp_path / "var/run").symlink_to("/run")  # absolute: the image's /run, not the host's
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "bin").symlink_to("usr/bin")
    assert operator_image.inside(tmp_path, "/var/run/secrets/x") == "/run/secrets/x"
    assert operator_image.inside(tmp_path, "/bin/sh") == "/usr/bin/sh"
    assert operator_image.inside(tmp_path, "/var/../../etc") == "/etc"
