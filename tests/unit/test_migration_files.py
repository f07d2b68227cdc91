from __future__ import annotations

from pathlib import Path

import pytest

from rpm.db.migrate import MigrationError, discover
from rpm.db.timescale import _version_tuple


def test_the_shipped_migrations_are_in_sequence() -> None:
    migrations = discover()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "foundation"


def test_a_gap_in_the_numbers_is_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0003_c.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="0003_c is out of sequence: expected number 0002"):
        discover(tmp_path)


def test_a_badly_named_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_first.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"named NNNN_<slug>\.sql"):
        discover(tmp_path)


def test_timescale_versions_compare_numerically() -> None:
    assert _version_tuple("2.18.0") >= (2, 18)
    assert _version_tuple("2.9.3") < (2, 18)
    assert _version_tuple("2.23.1-dev") == (2, 23)
