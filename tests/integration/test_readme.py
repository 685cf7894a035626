"""The README's configuration table names every setting Tandem reads, and only those."""

import re
from pathlib import Path

from tandem.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    table = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(TANDEM_[A-Z_]+)`", table))
    settings = {f"TANDEM_{name.upper()}" for name in Settings.model_fields}
    assert settings - documented == set(), "settings missing from the README table"
    assert documented - settings == set(), "README documents settings that do not exist"
