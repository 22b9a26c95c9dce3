"""Files as customer tables come (factory._data): encodings, workbooks, a saved index, unlabelled rows.

Each case is a small generated file reproducing what a new user's export brings; the build (or
the reader) must read it without a step by hand and say how it read it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from factory._data import read_table
from factory.errors import FactoryInputError


def _customers(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    spend = rng.gamma(2.0, 50.0, n)
    return pd.DataFrame(
        {
            "State": rng.choice(["Washington État", "Oregon", "Nevada"], n),
            "spend": spend.round(2),
            "visits": rng.poisson(4, n),
            "segment": np.where(spend > 100, "high", "low"),
        }
    )


# ------------------------------------------------------------------ encodings
def test_a_windows_export_is_read_as_cp1252_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    _customers().to_csv(path, index=False, encoding="cp1252")
    read = read_table(path)
    assert "Washington État" in set(read.frame["State"])
    assert len(read.notes) == 1 and "cp1252" in read.notes[0] and "0xc9" in read.notes[0]


def test_a_byte_undefined_in_cp1252_falls_back_to_latin_1(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(
        b"name,spend,segment\n" + b"".join(b"a\x81b,%d,%s\n" % (i, b"x" if i % 2 else b"y") for i in range(20))
    )
    read = read_table(path)
    assert read.frame["name"].iloc[0] == "a\x81b" and "latin-1" in read.notes[0]


def test_utf16_with_its_bom_and_utf8_with_a_bom_keep_clean_column_names(tmp_path: Path) -> None:
    frame = _customers(50)
    utf16 = tmp_path / "unicode.txt"
    frame.to_csv(utf16, index=False, sep="\t", encoding="utf-16")
    read = read_table(utf16)
    assert list(read.frame.columns) == list(frame.columns) and "UTF-16" in read.notes[0]
    bom = tmp_path / "bom.csv"
    frame.to_csv(bom, index=False, encoding="utf-8-sig")
    read = read_table(bom)
    assert read.frame.columns[0] == "State" and read.notes == ()  # `--drop State` must find it


# ------------------------------------------------------------------ workbooks
def _workbook(path: Path, data: pd.DataFrame) -> None:
    dictionary = pd.DataFrame({"column": data.columns, "meaning": ["…"] * data.shape[1]})
    with pd.ExcelWriter(path) as writer:
        dictionary.to_excel(writer, sheet_name="Data Dict", index=False)
        data.to_excel(writer, sheet_name="Customers", index=False)


def test_a_workbook_is_read_from_its_largest_sheet_or_the_one_named(tmp_path: Path) -> None:
    path = tmp_path / "book.xlsx"
    _workbook(path, _customers(120))
    read = read_table(path)
    assert len(read.frame) == 120 and "'Customers'" in read.notes[0] and "--sheet" in read.notes[0]
    assert list(read_table(path, sheet="Data Dict").frame.columns) == ["column", "meaning"]
    with pytest.raises(FactoryInputError, match="no sheet 'Sales'; its sheets are: Data Dict, Customers"):
        read_table(path, sheet="Sales")
    csv = tmp_path / "plain.csv"
    _customers(20).to_csv(csv, index=False)
    with pytest.raises(FactoryInputError, match="--sheet 'Customers' names a workbook sheet"):
        read_table(csv, sheet="Customers")


# ------------------------------------------------------------------ a saved index
@pytest.mark.parametrize("start", [0, 1])
def test_an_index_saved_with_the_file_is_not_an_input(tmp_path: Path, start: int) -> None:
    frame = _customers(40)
    frame.index += start
    path = tmp_path / "saved.csv"
    frame.to_csv(path)  # pandas writes the index as a first column with no header
    read = read_table(path)
    assert list(read.frame.columns) == list(frame.columns)
    assert f"row numbers {start}..{start + 39}" in read.notes[0]


def test_an_unnamed_first_column_that_is_not_the_row_numbers_is_kept(tmp_path: Path) -> None:
    frame = _customers(40)
    frame.index = np.arange(40) * 7  # not a run of row numbers: the schema decides what it is
    path = tmp_path / "other.csv"
    frame.to_csv(path)
    read = read_table(path)
    assert read.frame.columns[0] == "Unnamed: 0" and read.notes == ()


# ------------------------------------------------------------------ end to end
def test_a_workbook_with_a_date_and_unlabelled_rows_builds_and_the_card_says_how_it_was_read(
    tmp_path: Path,
) -> None:
    from factory import build

    rng = np.random.default_rng(3)
    data = _customers(400, seed=3)
    data["joined"] = pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 700, len(data)), unit="D")
    data.loc[data.index[::50], "segment"] = None  # 8 customers not yet labelled
    path = tmp_path / "customers.xlsx"
    _workbook(path, data)
    result = build(path, target="segment", out_dir=tmp_path / "out", time_budget_s=3, learners=["lgbm"], cv_folds=0)
    notes = result.manifest["data"]["notes"]
    assert any("'Customers'" in n for n in notes)
    assert any(n.startswith("8 rows with an empty 'segment' left out") for n in notes)
    kinds = {c["name"]: c["kind"] for c in result.manifest["data"]["schema"]}
    assert kinds["joined"] == "date" and kinds["State"] == "category"
    assert len(result.split.train) + len(result.split.validation) + len(result.split.test) == 392
    card = (result.artifact_dir / "card.md").read_text()
    assert "8 rows with an empty 'segment' left out" in card and "read 'Customers', the largest" in card


def test_a_target_empty_in_every_row_is_refused_naming_it(tmp_path: Path) -> None:
    from factory import build

    data = _customers(60)
    data["segment"] = " "
    with pytest.raises(FactoryInputError, match="target column 'segment' is empty in every row"):
        build(data, target="segment", out_dir=tmp_path, time_budget_s=2, learners=["lgbm"])
