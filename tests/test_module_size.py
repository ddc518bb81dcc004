"""No module of the packages grows past MAX_LINES unless its docstring says why it is one file."""

import ast
from pathlib import Path

from tests.test_import_graph import ALLOWED_IMPORTS

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 500
# the phrase a long module's docstring uses to say why it must stay one file
ONE_FILE = "one file"


def test_no_module_is_over_the_line_limit_without_a_reason():
    too_long = []
    for package in ALLOWED_IMPORTS:
        for path in sorted((ROOT / package).rglob("*.py")):
            source = path.read_text()
            lines = len(source.splitlines())
            docstring = ast.get_docstring(ast.parse(source)) or ""
            if lines > MAX_LINES and ONE_FILE not in docstring.lower():
                too_long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not too_long, (
        f"over {MAX_LINES} lines; split them or say in the module docstring why each "
        f"must be {ONE_FILE}:\n" + "\n".join(too_long)
    )
