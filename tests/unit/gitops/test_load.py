from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelsync.gitops.load import MAX_FILE_BYTES, load, resolve_path
from tests.support.paths import REPO

CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"


def repo(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def errors(tmp_path: Path, files: dict[str, str], path: str = "") -> list[str]:
    return [str(error) for error in load(repo(tmp_path, files), path).errors]


def test_multi_document_yaml_and_json_lists_recursively(tmp_path: Path) -> None:
    loaded = load(
        repo(
            tmp_path,
            {
                "a.yaml": CONFIGMAP.format(name="a") + "---\n" + CONFIGMAP.format(name="b"),
                "sub/dir/c.yml": CONFIGMAP.format(name="c"),
                "d.json": '{"kind": "List", "items": [{"apiVersion": "v1", "kind": "ConfigMap", '
                '"metadata": {"name": "d"}}]}',
                "notes.txt": "ignored",
                ".hidden/e.yaml": CONFIGMAP.format(name="e"),
            },
        )
    )
    assert loaded.errors == []
    assert [(o.manifest["metadata"]["name"], str(o.source)) for o in loaded.objects] == [
        ("a", "a.yaml:1"),
        ("b", "a.yaml:6"),
        ("d", "d.json:1"),
        ("c", "sub/dir/c.yml:1"),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: [1,\n", "m.yaml:2: invalid YAML: "),
        ("a: 1\na: 2\n", "m.yaml:2: invalid YAML: duplicate key 'a'"),
        ("x: !!python/name:os.system\n", "m.yaml:1: invalid YAML: YAML tags are not allowed"),
        ("- a\n- b\n", "m.yaml:1: not a Kubernetes object"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
            "m.yaml:1: not a Kubernetes object: missing metadata.name",
        ),
        (
            "kind: ConfigMap\nmetadata: {name: x}\n",
            "m.yaml:1: not a Kubernetes object: missing apiVersion",
        ),
        ("a: " + "[" * 100 + "]" * 100 + "\n", "m.yaml:1: nested deeper than 64 levels"),
    ],
    ids=["syntax", "duplicate", "tag", "list", "no-name", "no-apiversion", "deep"],
)
def test_bad_documents_are_named_by_file_and_line(tmp_path: Path, text: str, expected: str) -> None:
    found = errors(tmp_path, {"m.yaml": text})
    assert len(found) == 1
    assert found[0].startswith(expected)


def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path: Path) -> None:
    bomb = (
        "a: &a ["
        + ",".join(["x"] * 10)
        + "]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 10) + "]\n"
            for i in range(8)
        )
    )
    # At the alias that goes over: `e`'s ten of `d` (each 11,111 values) on line 5.
    assert errors(tmp_path, {"m.yaml": bomb}) == [
        "m.yaml:5: more than 100000 values once aliases are expanded"
    ]


def test_one_bad_document_does_not_hide_the_next_ones(tmp_path: Path) -> None:
    found = errors(tmp_path, {"m.yaml": "a: 1\na: 2\n---\n- list\n"})
    assert [e.split(":")[1] for e in found] == ["2", "4"]


def test_a_large_file_and_non_utf8_are_refused(tmp_path: Path) -> None:
    (tmp_path / "big.yaml").write_text("#" * (MAX_FILE_BYTES + 1))
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    found = [str(e) for e in load(tmp_path).errors]
    assert found[0].startswith("big.yaml:1: file is")
    assert found[1] == "latin1.yaml:1: not UTF-8 text (a binary file?); remove it"


def test_symlinks_may_not_leave_the_repository(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.yaml").write_text(CONFIGMAP.format(name="x"))
    root = tmp_path / "repo"
    root.mkdir()
    (root / "in.yaml").write_text(CONFIGMAP.format(name="in"))
    (root / "link.yaml").symlink_to(outside / "x.yaml")
    (root / "dir").symlink_to(outside)
    (root / "inside.yaml").symlink_to(root / "in.yaml")
    loaded = load(root)
    assert sorted(o.manifest["metadata"]["name"] for o in loaded.objects) == ["in", "in"]
    assert sorted(str(e) for e in loaded.errors) == [
        "dir:1: symlinked directory points outside the repository",
        "link.yaml:1: symlink points outside the repository; replace it with the file itself",
    ]


@pytest.mark.parametrize("path", ["..", "a/../..", "/etc", "../x"])
def test_paths_that_leave_the_repository_are_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(ValueError, match="repository"):
        resolve_path(tmp_path, path)
    assert load(tmp_path, path).errors


def test_a_missing_path_is_an_empty_revision(tmp_path: Path) -> None:
    loaded = load(tmp_path, "nothing-here")
    assert (loaded.objects, loaded.errors) == ([], [])


def test_unchanged_files_parse_once_and_hand_out_copies(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n")
    (tmp_path / "bad.yaml").write_text("a: [\n")
    first = load(tmp_path)
    first.objects[0].manifest["metadata"]["name"] = "changed by a caller"
    again = load(tmp_path)
    assert again.objects[0].manifest["metadata"]["name"] == "a"
    assert [str(e) for e in again.errors] == [str(e) for e in first.errors]
    assert len(again.errors) == 1
    # Same content elsewhere is another file: its source names the new path.
    (tmp_path / "b.yaml").write_text((tmp_path / "a.yaml").read_text())
    sources = sorted(o.source.file for o in load(tmp_path).objects)
    assert sources == ["a.yaml", "b.yaml"]


# Issue 29 item 3: what the loader builds is bounded by its node limit and its loaded
# budget, not by the bytes it reads. Each measurement runs in a process of its own
# (VmHWM, the peak resident memory, from /proc) so that nothing else of the test run
# counts; the inputs are the issue's.
MEASURE = """
import sys
from pathlib import Path
from modelsync.gitops import load as L

def hwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

before = hwm()
errors = [str(error) for error in L.load(Path(sys.argv[1])).errors]
again = L.load(Path(sys.argv[1]))  # from the parse cache
assert [str(error) for error in again.errors] == errors
print(hwm() - before, getattr(L, "_parsed_size", -1))  # -1: no byte count
for error in errors:
    print(error)
"""
MIB = 1 << 20


def measured(root: Path) -> tuple[int, int, list[str]]:
    """(peak growth in bytes, parse cache bytes, errors) of loading `root` twice."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(root)],
        env={**os.environ, "PYTHONPATH": str(REPO / "controller")},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    first, *errors = done.stdout.splitlines()
    growth, cached = first.split()
    return int(growth), int(cached), errors


def dense(index: int) -> str:
    """A document just under the per-file limit holding a value every two bytes."""
    header = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: dense-{index}}}\nzeros: ["
    count = (MAX_FILE_BYTES - len(header) - 16) // 2
    return header + "0," * count + "0]\n"


def test_security_dense_documents_are_refused_within_the_node_limit(tmp_path: Path) -> None:
    """Seven files just under 1 MiB of flow sequences of 0 (the size check alone cannot
    refuse them): each is refused having built at most MAX_NODES nodes (it was 150 MiB a
    file, composed whole before counting)."""
    for index in range(7):
        (tmp_path / f"dense-{index}.yaml").write_text(dense(index))
        assert (tmp_path / f"dense-{index}.yaml").stat().st_size < MAX_FILE_BYTES
    growth, _, errors = measured(tmp_path)
    assert errors == [
        f"dense-{i}.yaml:4: more than 100000 values once aliases are expanded" for i in range(7)
    ]
    assert growth < 48 * MIB, f"loading grew the peak by {growth / MIB:.0f} MiB"


def wide(index: int) -> str:
    """A file just under the per-file limit and under the node limit (90,000 values)."""
    header = f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: wide-{index}\nwide:\n"
    return header + "".join(f"  - v{index:03d}{i:06d}\n" for i in range(MAX_FILE_BYTES // 16))


def test_security_eighty_files_of_one_mib_stay_within_the_loaded_budget(tmp_path: Path) -> None:
    """80 files of 1 MiB, each within every per-file limit, weigh ~6 MiB each once
    loaded: the revision is refused once its objects pass the loaded budget (64 MiB),
    and the parse cache keeps bytes, not objects (it kept ~500 MiB)."""
    for index in range(80):
        (tmp_path / f"wide-{index:02d}.yaml").write_text(wide(index))
    growth, cached, errors = measured(tmp_path)
    [error] = errors
    assert "MiB of the operator's memory" in error, error
    assert "split spec.path into several ModelSyncs" in error, error
    assert cached <= 32 * MIB, f"the parse cache holds {cached / MIB:.0f} MiB"
    assert growth < 100 * MIB, f"loading grew the peak by {growth / MIB:.0f} MiB"
