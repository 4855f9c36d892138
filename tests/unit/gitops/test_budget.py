from __future__ import annotations

from collections.abc import Iterator

from modelsync.gitops.budget import (
    SETTING,
    Blob,
    parse_ls_tree,
    parse_missing,
    refusal,
)

MIB = 1 << 20
A, B, C = ("a" * 40, "b" * 40, "c" * 40)


def listing(*records: str) -> list[str]:
    return "\0".join(records).split("\0")


def test_ls_tree_with_sizes_gives_every_blob_with_its_size_and_skips_submodules() -> None:
    records = listing(
        f"100644 blob {A}     120\tmodels/a b.yaml",  # a space in a path is kept
        f"120000 blob {B}      11\tlink",
        f"160000 commit {C}       -\tvendor/sub",
        "",
    )
    assert list(parse_ls_tree(records)) == [Blob("models/a b.yaml", 120), Blob("link", 11)]


def test_ls_tree_without_sizes_marks_only_missing_blobs_as_unknown() -> None:
    records = listing(f"100644 blob {A}\tbase/big.bin", f"100644 blob {B}\tmodels/a.yaml")
    blobs = list(parse_ls_tree(records, frozenset({A})))
    assert blobs == [Blob("base/big.bin", None), Blob("models/a.yaml", 0)]


def test_missing_objects_are_the_question_marked_lines_of_rev_list() -> None:
    lines = [C, f"{B} models", f"?{A}", "?", ""]
    assert parse_missing(lines) == frozenset({A})


def test_a_revision_within_the_budget_is_accepted() -> None:
    blobs = [Blob("models/a.yaml", 10 * MIB), Blob("base/b.bin", 90 * MIB)]
    assert refusal(blobs, 100 * MIB) is None


def test_one_file_over_the_budget_is_named_with_its_size_the_limit_and_the_setting() -> None:
    blobs = [Blob("models/a.yaml", 300), Blob("base/weights.bin", 300 * MIB)]
    message = refusal(blobs, 100 * MIB)
    assert message is not None
    assert message.startswith(
        "base/weights.bin is 314572800 bytes (300.0 MiB): larger than the limit of "
        "104857600 bytes (100.0 MiB) for a revision"
    )
    assert SETTING in message


def test_files_that_add_up_to_more_than_the_budget_are_refused_naming_the_largest() -> None:
    blobs = [Blob(f"data/{n}.bin", (n + 1) * MIB) for n in range(20)]  # 210 MiB in all
    message = refusal(blobs, 100 * MIB)
    assert message is not None
    assert "the revision's 20 files add up to 220200960 bytes (210.0 MiB)" in message
    assert "(largest: data/19.bin 20971520 bytes (20.0 MiB), data/18.bin" in message
    assert "data/17.bin" in message
    assert "data/16.bin" not in message


def test_a_file_the_fetch_left_out_is_refused_by_name_without_a_size() -> None:
    blobs = [Blob("models/a.yaml", 0), Blob("base/weights.bin", None)]
    message = refusal(blobs, 100 * MIB)
    assert message is not None
    assert message.startswith(
        "base/weights.bin is larger than the limit of 104857600 bytes (100.0 MiB)"
    )


def test_many_files_over_the_budget_are_counted_not_all_named() -> None:
    blobs = [Blob(f"big/{n}.bin", 2 * MIB) for n in range(5)]
    message = refusal(blobs, MIB)
    assert message is not None
    assert "(and 2 more)" in message
    assert message.count("big/") == 3


def test_a_file_exactly_at_the_budget_fits() -> None:
    assert refusal([Blob("a.bin", MIB)], MIB) is None
    assert refusal([Blob("a.bin", MIB + 1)], MIB) is not None


def test_too_many_files_are_refused_without_reading_the_rest() -> None:
    def endless() -> Iterator[Blob]:
        n = 0
        while True:
            n += 1
            yield Blob(f"f{n}", 0)

    message = refusal(endless(), 100 * MIB, max_files=1000)
    assert message is not None
    assert "more than 1000 files" in message
