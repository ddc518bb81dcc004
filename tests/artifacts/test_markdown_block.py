"""A generated block of a page: replaced between its markers, every other byte kept."""

import pytest

from artifacts import atomic
from artifacts.markdown_block import (
    block_markers,
    block_span,
    check_page,
    replace_block,
    write_block,
)


class PageError(Exception):
    """The caller's own error class."""


PAGE = (
    "# Results\n\nintro\n\n<!-- levers:start -->\nold levers\n<!-- levers:end -->\n\n"
    "<!-- results:start -->\nold\n<!-- results:end -->\ntail without a newline"
)


def test_the_markers_are_html_comments_named_by_the_block():
    assert block_markers("levers") == ("<!-- levers:start -->", "<!-- levers:end -->")
    assert block_markers("finding:x") == ("<!-- finding:x:start -->", "<!-- finding:x:end -->")


def test_only_the_named_block_changes(tmp_path):
    page = tmp_path / "results.md"
    page.write_text(PAGE)
    write_block(page, "results", "\n| a |\n|---|\n\n", "--table-into", PageError)
    assert page.read_text() == PAGE.replace("\nold\n", "\n| a |\n|---|\n")
    write_block(page, "levers", "new levers", "--table-into", PageError)
    assert page.read_text() == PAGE.replace("\nold\n", "\n| a |\n|---|\n").replace(
        "old levers", "new levers"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.md"]


def test_replace_block_on_text_and_its_span():
    start, end = block_span(PAGE, "results", "page", PageError)
    assert PAGE[start:end] == "\nold\n"
    assert replace_block("a<!-- x:start --><!-- x:end -->b", "x", " y ", "page", PageError) == (
        "a<!-- x:start -->\ny\n<!-- x:end -->b"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no markers here\n", "needs the markers <!-- results:start --> and then"),
        ("<!-- results:start -->\nno end\n", "needs the markers"),
        ("<!-- results:end -->\n<!-- results:start -->\n", "needs the markers"),
        ("<!-- results:start -->\n<!-- results:end -->\n" * 2, "more than one"),
    ],
)
def test_bad_markers_are_one_line_errors_of_the_callers_class(tmp_path, text, message):
    page = tmp_path / "page.md"
    page.write_text(text)
    with pytest.raises(PageError, match=message) as error:
        check_page(page, "results", "--table-into", PageError)
    assert "\n" not in str(error.value) and str(error.value).startswith(f"--table-into {page} ")
    with pytest.raises(PageError, match=message):
        write_block(page, "results", "| new |", "--table-into", PageError)
    assert page.read_text() == text


def test_a_missing_page_says_how_to_make_one(tmp_path):
    with pytest.raises(PageError, match=r"does not exist; create it with the markers") as error:
        check_page(tmp_path / "missing.md", "levers", "--docs", PageError)
    assert "<!-- levers:start -->" in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "missing.md").exists()


def test_the_page_is_written_atomically(tmp_path, monkeypatch):
    page = tmp_path / "results.md"
    page.write_text(PAGE)

    def no_rename(source, target):
        raise OSError("disk gone")

    monkeypatch.setattr(atomic.os, "replace", no_rename)
    with pytest.raises(OSError, match="disk gone"):
        write_block(page, "results", "| new |", "--table-into", PageError)
    assert page.read_text() == PAGE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.md"]
