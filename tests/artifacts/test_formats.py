"""The format / format_version check: one-line errors of the reader's own class."""

import numpy as np
import pytest

from artifacts.formats import check_format, check_version


class ReaderError(Exception):
    """The caller's own error class."""


def test_a_readable_header_gives_its_version():
    header = {"format": "corridor-bc-checkpoint", "format_version": 1}
    assert check_format("x.pt", header, (1,), ReaderError, name="corridor-bc-checkpoint") == 1
    assert check_format("m.json", {"format_version": 2}, (1, 2), ReaderError) == 2
    version = check_version("run.h5", np.int64(2), (1, 2), ReaderError)
    assert version == 2 and type(version) is int


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"state_dict": {}}, r"^x\.pt is not a corridor-bc checkpoint$"),
        ([1, 2], r"^x\.pt is not a corridor-bc checkpoint$"),
        ({"format": "other", "format_version": 1}, r"^x\.pt is not a corridor-bc checkpoint$"),
        (
            {"format": "corridor-bc-checkpoint", "format_version": 99},
            r"^x\.pt: format_version 99 is not one this corridor-bc reads \(1\)$",
        ),
        (
            {"format": "corridor-bc-checkpoint"},
            r"^x\.pt: format_version None is not one this corridor-bc reads \(1\)$",
        ),
    ],
)
def test_unreadable_headers_are_one_line_errors(data, message):
    with pytest.raises(ReaderError, match=message):
        check_format(
            "x.pt", data, (1,), ReaderError, name="corridor-bc-checkpoint", kind="checkpoint"
        )


def test_without_a_name_only_the_version_is_checked_and_the_hint_ends_the_line():
    with pytest.raises(ReaderError, match=r"format_version '2' is not one .* \(1 or 2\); rerun"):
        check_format("m.json", {"format_version": "2"}, (1, 2), ReaderError, hint="; rerun")
    with pytest.raises(ReaderError, match="is not a corridor-bc file"):
        check_format("m.json", "not a mapping", (1,), ReaderError)
