from __future__ import annotations

import os
import subprocess
import sys

import pytest

from modelsync import __version__
from modelsync.cli import main as cli
from modelsync.telemetry import logs


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"modelsync {__version__}"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_every_command_has_an_example() -> None:
    for name, command in cli.main_group.commands.items():
        assert "modelsync" in (command.epilog or ""), name


def test_help_names_the_program_as_called() -> None:
    assert cli.program_name("/usr/bin/kubectl-modelsync") == "kubectl modelsync"
    assert cli.program_name("/venv/bin/modelsync") == "modelsync"


def test_module_entry_point_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelsync", "--help"], capture_output=True, text=True, check=True
    )
    assert "GitOps for machine-learning model serving" in result.stdout


def test_shell_completion_script_is_generated() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelsync"],
        env={**os.environ, "_MODELSYNC_COMPLETE": "bash_source"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert "_MODELSYNC_COMPLETE" in result.stdout


def test_json_logs_are_one_object_per_line() -> None:
    import json
    import logging

    record = logging.LogRecord(
        "modelsync.sync", logging.WARNING, __file__, 1, "sync %s failed", ("ns/prod",), None
    )
    entry = json.loads(logs.JsonFormatter().format(record))
    assert (entry["level"], entry["logger"], entry["message"]) == (
        "WARNING",
        "modelsync.sync",
        "sync ns/prod failed",
    )
    assert "object" not in entry


def test_json_log_lines_about_an_object_name_it_and_the_revision() -> None:
    import json
    import logging

    logger = logging.getLogger("modelsync.test-json")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign,assignment]
    logger.addHandler(handler)
    try:
        logger.warning("x", extra=logs.about("ModelSync", "ns", "prod", "main@sha1:abc"))
    finally:
        logger.removeHandler(handler)
    entry = json.loads(logs.JsonFormatter().format(records[0]))
    assert (entry["object"], entry["revision"]) == ("ModelSync ns/prod", "main@sha1:abc")


def test_namespace_patterns_follow_kopf() -> None:
    from modelsync.api.namespaces import namespace_matches as watched

    assert watched("team-a", ("*,!own-*",))
    assert not watched("own-operator-1", ("*,!own-*",))
    assert watched("own-operator-1", ("*,!own-*", "own-operator-1"))  # any pattern may match
    assert watched("models", ("models",))
    assert not watched("other", ("models",))


@pytest.mark.parametrize(
    ("flag", "value"), [("--kube-qps", "0"), ("--kube-qps", "fast"), ("--kube-burst", "0")]
)
def test_run_refuses_a_rate_limit_that_cannot_be(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", flag, value]) == 2
    assert flag in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--runtime-image", "seldon=mirror.local/mlserver:1", "'seldon' is not a runtime"),
        ("--runtime-image", "custom=mirror.local/server:1", "names its image itself"),
        ("--runtime-image", "mirror.local/mlserver:1", "write RUNTIME=IMAGE"),
        ("--runtime-image", "mlserver=", "write RUNTIME=IMAGE"),
        ("--image-pull-policy", "Sometimes", "Sometimes"),
        ("--storage-initializer-image", " ", "an empty image"),
        ("--shard", "no spaces/allowed", "is not a label value"),
        ("--shard", "-edge", "is not a label value"),
        ("--shard", "x" * 64, "is not a label value"),
    ],
)
def test_run_refuses_runtime_images_that_cannot_be(
    flag: str, value: str, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", flag, value]) == 2
    err = capsys.readouterr().err
    assert flag in err
    assert words in err


def test_runtime_images_are_read_per_runtime() -> None:
    from modelsync.runtime.settings import parse_runtime_images

    assert parse_runtime_images(
        ["mlserver=mirror.local/mlserver:1.7.1", " vllm = mirror.local/vllm@sha256:ab "]
    ) == {"mlserver": "mirror.local/mlserver:1.7.1", "vllm": "mirror.local/vllm@sha256:ab"}
    assert parse_runtime_images(["triton=a:1", "triton=a:1"]) == {"triton": "a:1"}
    with pytest.raises(ValueError, match="given another image before"):
        parse_runtime_images(["triton=a:1", "triton=b:2"])
