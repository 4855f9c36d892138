"""api.schemas, bounded (issue 29 item 3): where a field is, read from one document."""

from __future__ import annotations

from modelsync.api import schemas


def test_security_line_of_reads_only_the_document_it_is_asked_about() -> None:
    """A field's line in a rendered output of many documents: only that document is
    composed, never the others (a refused 30 MiB document before it cost gigabytes of
    pure-Python nodes). A broken document before it shows that it is not read."""
    text = "broken: [\n---\n" + "a: 1\nb:\n  c: 2\n"
    assert schemas.line_of(text, 3, ("b", "c")) == 5
