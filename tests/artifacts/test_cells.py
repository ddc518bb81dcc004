"""Percentage and interval cells, and markdown table rows."""

from artifacts.cells import interval_cell, pct
from artifacts.markdown_table import markdown_row, markdown_rule, markdown_table


def test_percentages_with_their_digits():
    assert pct(0.56) == "56.0%"
    assert pct(0.5678, 0) == "57%"
    assert pct(0.12345, 2) == "12.35%"
    assert pct(0.431, 1, sign=False) == "43.1"
    assert pct(None) == "-" and pct(None, 0, sign=False) == "-"
    assert pct(1.0) == "100.0%" and pct(0.0, 0) == "0%"


def test_interval_cells_in_each_tables_form():
    # sweep and results pages: bounds at 0 digits
    assert interval_cell(0.9, 0.8, 0.954) == "90.0% [80%, 95%]"
    # a DAgger run's table: bounds at 1 digit
    assert interval_cell(0.5, 0.4, 0.599, bound_digits=1) == "50.0% [40.0%, 59.9%]"
    # the findings report: bounds without the sign
    assert interval_cell(0.56, 0.431, 0.689, bound_digits=1, bound_sign=False) == (
        "56.0% [43.1, 68.9]"
    )
    # an evaluation's summary: two spaces before the bracket
    assert interval_cell(0.85, 0.64, 0.948, bound_digits=1, gap="  ") == "85.0%  [64.0%, 94.8%]"
    assert interval_cell(0.5, None, None) == "50.0% [-, -]"


def test_markdown_rows_escape_pipes_and_rules_come_in_two_forms():
    assert markdown_row(["a", "b | c"]) == "| a | b \\| c |"
    assert markdown_rule(3) == "| --- | --- | --- |"
    assert markdown_rule(3, compact=True) == "|---|---|---|"
    assert markdown_table(["x", "y"], [["1", "2"], ["3", "4"]], compact_rule=True) == [
        "| x | y |",
        "|---|---|",
        "| 1 | 2 |",
        "| 3 | 4 |",
    ]
