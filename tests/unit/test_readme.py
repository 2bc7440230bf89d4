"""The README's settings table is the settings' own description, kept in step."""

from __future__ import annotations

from kstate.settings import describe
from tools.procs import REPO


def test_readme_settings_table_matches_settings():
    text = (REPO / "README.md").read_text()
    table = text.split("<!-- settings-table -->")[1].split("<!-- /settings-table -->")[0]
    rows = [line for line in table.strip().splitlines()[2:]]
    expected = [f"| `{f}` | `{e}` | `{d}` | {t} |" for f, e, d, t in describe()]
    assert rows == expected, "regenerate the README table from kstate.settings.describe()"


def test_readme_starts_with_the_two_commands():
    first = (REPO / "README.md").read_text().splitlines()[:4]
    assert any("just demo" in line for line in first)
    assert any(line.startswith("just test") for line in first)
