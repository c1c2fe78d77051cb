"""Tests of identifier refusal and pseudonymization (random codes, separate reusable key file)."""

from __future__ import annotations

import csv
import hashlib
import stat
from pathlib import Path

import polars as pl
import pytest

from sciatica_outcomes.errors import IdentifierColumnError, UnusableInputError
from sciatica_outcomes.ingest import check_identifiers, find_identifier_columns, pseudonymize, random_codes


@pytest.mark.parametrize(
    "name",
    [
        "name",
        "Patient Name",
        "first_name",
        "surname",
        "MRN",
        "medical_record_number",
        "DOB",
        "date_of_birth",
        "birthdate",
        "phone",
        "mobile_phone",
        "Email",
        "e-mail",
        "address",
        "street_address",
        "SSN",
        "nhs_number",
    ],
)
def test_identifier_names_are_found(name: str) -> None:
    assert [c for c, _ in find_identifier_columns(pl.DataFrame({name: ["x"]}))] == [name]


@pytest.mark.parametrize(
    "name", ["episode_id", "patient_id", "program", "exercise", "clinic_id", "therapist_id", "zip3", "band"]
)
def test_canonical_and_harmless_names_pass(name: str) -> None:
    assert find_identifier_columns(pl.DataFrame({name: ["x"]})) == []


def test_zip_codes_refused_only_beyond_three_digits() -> None:
    assert find_identifier_columns(pl.DataFrame({"zip": ["021", "946"]})) == []
    found = find_identifier_columns(pl.DataFrame({"zip": ["021", "94612"]}))
    assert found and found[0][0] == "zip"
    with pytest.raises(IdentifierColumnError, match=r"sciatica-outcomes pseudonymize f\.csv --column zip"):
        check_identifiers(pl.DataFrame({"zip": ["94612"]}), "f.csv")


def test_random_codes_are_distinct_and_avoid_existing() -> None:
    codes = random_codes(5000, "P")
    assert len(set(codes)) == 5000
    assert all(len(c) == 11 and c.startswith("P") for c in codes)
    assert not set(random_codes(100, "P", avoid=set(codes))) & set(codes)


def test_pseudonymize_uses_random_codes_and_reuses_the_key(tmp_path: Path) -> None:
    src = tmp_path / "raw.csv"
    pl.DataFrame(
        {"mrn": ["A1", "B2", "A1", None], "age_at_start": ["40", "50", "41", "60"], "phone": ["1"] * 4}
    ).write_csv(src)
    key = tmp_path / "secret" / "key.csv"
    r1 = pseudonymize(src, "mrn", key=key, out=tmp_path / "o1.csv", drop=["phone"])
    o1 = pl.read_csv(tmp_path / "o1.csv", infer_schema=False)
    assert o1.columns == ["patient_id", "age_at_start"]
    assert (r1.identifiers, r1.new_codes, r1.reused_codes) == (2, 2, 0)
    codes = o1["patient_id"].to_list()
    assert codes[0] == codes[2] and codes[0] != codes[1] and codes[3] is None
    digests = {hashlib.sha256(v.encode()).hexdigest() for v in ("A1", "B2")}
    assert not any(c[1:].lower() in d for c in codes[:2] for d in digests)
    # same key file: same codes for known identifiers, new ones for new identifiers
    pl.DataFrame({"mrn": ["B2", "C3"], "age_at_start": ["1", "2"]}).write_csv(tmp_path / "raw2.csv")
    r2 = pseudonymize(tmp_path / "raw2.csv", "mrn", key=key, out=tmp_path / "o2.csv")
    o2 = pl.read_csv(tmp_path / "o2.csv", infer_schema=False)
    assert o2["patient_id"][0] == codes[1]
    assert (r2.new_codes, r2.reused_codes) == (1, 1)
    # a fresh key gives different codes: codes carry no information about the identifier
    pseudonymize(src, "mrn", key=tmp_path / "other.csv", out=tmp_path / "o3.csv", drop=["phone"])
    assert pl.read_csv(tmp_path / "o3.csv", infer_schema=False)["patient_id"][0] != codes[0]
    assert pl.read_csv(key)["identifier"].to_list() == ["A1", "B2", "C3"]


def test_pseudonymize_refuses_leftover_identifiers_and_bad_paths(tmp_path: Path) -> None:
    src = tmp_path / "raw.csv"
    pl.DataFrame({"mrn": ["A1"], "email": ["a@b.c"]}).write_csv(src)
    with pytest.raises(UnusableInputError, match="email"):
        pseudonymize(src, "mrn", key=tmp_path / "k.csv", out=tmp_path / "o.csv")
    with pytest.raises(UnusableInputError, match="must differ"):
        pseudonymize(src, "mrn", key=tmp_path / "k.csv", out=src)
    with pytest.raises(UnusableInputError, match="no column"):
        pseudonymize(src, "nope", key=tmp_path / "k.csv", out=tmp_path / "o.csv")


def test_the_key_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    src = tmp_path / "raw.csv"
    pl.DataFrame({"mrn": ["A1", "B2"], "age_at_start": ["40", "50"]}).write_csv(src)
    key = tmp_path / "secret" / "key.csv"
    pseudonymize(src, "mrn", key=key, out=tmp_path / "o.csv")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # a key file left world-readable by an earlier version is tightened when it is rewritten
    key.chmod(0o644)
    pl.DataFrame({"mrn": ["C3"], "age_at_start": ["60"]}).write_csv(src)
    pseudonymize(src, "mrn", key=key, out=tmp_path / "o.csv")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert [p.name for p in key.parent.iterdir()] == ["key.csv"]  # no temporary file left


def test_pseudonymize_refuses_the_input_as_key_file_without_a_traceback(tmp_path: Path) -> None:
    from typer.testing import CliRunner  # noqa: PLC0415

    from sciatica_outcomes.cli import app  # noqa: PLC0415

    src = tmp_path / "raw.csv"
    pl.DataFrame({"mrn": ["A1"], "age_at_start": ["40"]}).write_csv(src)
    before = src.read_bytes()
    res = CliRunner().invoke(
        app,
        ["pseudonymize", str(src), "--column", "mrn", "--key", str(src), "--out", str(tmp_path / "o.csv")],
    )
    assert res.exit_code == 2
    assert res.output == (
        f"error: --key {src} is the input file: the key file must be a separate file, kept apart from the "
        "data\n"
    )
    assert src.read_bytes() == before and not (tmp_path / "o.csv").exists()
    # a file that is not a key file, or an input that cannot be parsed: one sentence too
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    res = CliRunner().invoke(
        app,
        ["pseudonymize", str(src), "--column", "mrn", "--key", str(other), "--out", str(tmp_path / "o.csv")],
    )
    assert res.exit_code == 2 and res.output.startswith(f"error: --key {other} is not a key file")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("mrn,age\nA1,40,extra\n")
    res = CliRunner().invoke(
        app,
        [
            "pseudonymize",
            str(ragged),
            "--column",
            "mrn",
            "--key",
            str(tmp_path / "k.csv"),
            "--out",
            str(tmp_path / "o.csv"),
        ],
    )
    assert res.exit_code == 2 and res.output.startswith(f"error: {ragged}: cannot read as csv: ")
    assert res.output.count("\n") == 1


def test_pseudonymize_output_and_key_are_spreadsheet_safe_and_codes_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "raw.csv"
    raw = pl.DataFrame(
        {
            "mrn": ["=1+1", "@A1", "B2"],
            "note": ['=HYPERLINK("http://x","y")', "@SUM(A1)", "-1-1"],
            "grc": ["-3", "+2", "0"],
        }
    )
    raw.write_csv(src)
    key = tmp_path / "key.csv"
    out = tmp_path / "o.csv"
    pseudonymize(src, "mrn", key=key, out=out)
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert [r[1:] for r in rows] == [
        ["note", "grc"],
        ['\'=HYPERLINK("http://x","y")', "-3"],  # plain numbers stay numbers
        ["'@SUM(A1)", "+2"],
        ["'-1-1", "0"],
    ]
    with key.open(newline="", encoding="utf-8") as fh:
        assert [r[1] for r in list(csv.reader(fh))[1:]] == ["'=1+1", "'@A1", "B2"]
    codes = [r[0] for r in rows[1:]]
    # read back, the key gives the same codes to the same identifiers (the apostrophes are undone)
    again = pseudonymize(src, "mrn", key=key, out=tmp_path / "o2.csv")
    assert (again.new_codes, again.reused_codes) == (0, 3)
    assert pl.read_csv(tmp_path / "o2.csv", infer_schema=False)["patient_id"].to_list() == codes
