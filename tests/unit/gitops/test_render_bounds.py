"""Render, bounded (issue 29 item 3): rendered output is read a document at a time, each
under the per-file limit before it is parsed and all of them under the loaded budget;
renders run at once only as many as the renderers' memory holds. No renderer binary:
the output path and the slots are driven directly."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from modelsync.gitops import load as loadmod
from modelsync.gitops import render as rendering

MIB = 1 << 20


def configmap(name: str, body: str = "") -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n{body}"


def test_security_rendered_document_over_the_file_limit_is_refused_before_parsing() -> None:
    big = configmap("big", "data:\n  x: " + "a" * (loadmod.MAX_FILE_BYTES + 10) + "\n")
    output = "---\n" + configmap("first") + "---\n" + big + "---\n" + configmap("last")
    rendered = rendering.Rendered()
    rendering._parse_output(output.encode(), "k (rendered)", "k", rendered)
    assert [str(e) for e in rendered.errors] == [
        f"k (rendered):7: a rendered document of {len(big.encode())} bytes; the limit is "
        f"{loadmod.MAX_FILE_BYTES}, as for a file (render smaller objects)"
    ]
    # The others are read, at their lines of the whole output.
    assert [(o.manifest["metadata"]["name"], o.source.line) for o in rendered.objects] == [
        ("first", 2),
        ("last", 14),
    ]


def test_security_rendered_output_stops_at_the_loaded_budget() -> None:
    """32 MiB of output (the renderer's limit) of documents each under every per-file
    limit: read until the objects pass the loaded budget, then no further."""
    values = "x:\n" + "".join(f"  - v{i:07d}\n" for i in range(60_000))  # ~0.8 MiB
    output = "".join("---\n" + configmap(f"m{i}", values) for i in range(20))
    rendered = rendering.Rendered()
    rendering._parse_output(output.encode(), "k (rendered)", "k", rendered)
    [error] = [str(e) for e in rendered.errors]
    assert "MiB of the operator's memory" in error, error
    assert len(rendered.objects) < 20


def test_security_renders_at_once_are_bounded_by_the_renderers_memory(tmp_path: Path) -> None:
    """Renderers of 1 GiB in 2.5 GiB: two run at once, the others wait for a slot (five
    renders of a renderer that notes when it starts and ends, through run_bounded)."""
    settings = rendering.RenderSettings(memory_bytes=1 << 30, memory_total_bytes=5 << 29)
    log = tmp_path / "log"
    script = f"echo + >> {log}; sleep 0.3; echo - >> {log}"
    env = {"PATH": os.defpath}

    def render() -> None:
        rendering.run_bounded(["sh", "-c", script], tmp_path, env, settings, tmp_path)

    threads = [threading.Thread(target=render) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    running = most = 0
    for mark in log.read_text().split():
        running += 1 if mark == "+" else -1
        most = max(most, running)
    assert most == 2, log.read_text()
