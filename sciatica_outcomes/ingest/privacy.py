"""Privacy at the door: refuse direct identifiers; replace them with random codes kept in a separate key file.

Column names are matched against the direct identifiers of HIPAA Safe Harbor (45 CFR 164.514(b)(2)) that
clinic exports commonly carry: names, medical record numbers, dates of birth, phone and fax numbers, e-mail
addresses, street addresses, social security and national insurance numbers, and ZIP or postal codes longer
than three characters. A file with such a column is refused as a whole; :func:`pseudonymize` replaces the
column with random codes and writes the crosswalk to a key file that is stored apart from the data.

Codes are random (``os.urandom``), never derived from the identifier: 45 CFR 164.514(c) forbids
re-identification codes derived from individual information, and a hash of an MRN can be reversed by hashing
every possible MRN. Re-running with the same key file reuses the codes already issued.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from sciatica_outcomes.errors import IdentifierColumnError, UnusableInputError
from sciatica_outcomes.outputs import restore_cells, write_safe_csv

__all__ = [
    "IDENTIFIER_KINDS",
    "PseudonymizeResult",
    "check_identifiers",
    "find_identifier_columns",
    "pseudonymize",
    "random_codes",
]

#: Normalised column-name patterns of direct identifiers and what they are.
IDENTIFIER_KINDS: dict[str, str] = {
    r"^(patient_|client_|person_)?"
    r"(first_?|last_?|full_?|given_?|family_?|middle_?|sur|fore|maiden_?)?name$": "a person's name",
    r"^(mrn|medical_record(_number|_no|_num)?|record_number|hospital_number|hospital_no|nhs_number|nhs_no|"
    r"chart_number|health_card(_number)?|insurance_number|member_id|account_number)$": (
        "a medical record, health plan or account number"
    ),
    r"^(dob|d_o_b|date_of_birth|birth_?date|birthday|birth_day|date_birth)$": "a date of birth",
    r"^(.*_)?(phone|telephone|tel|mobile|cellphone|cell_phone|fax)(_.*)?$": "a phone or fax number",
    r"^(.*_)?(e_?mail)(_.*)?$": "an e-mail address",
    r"^(.*_)?(address|street|addr|address_line_?\d?)(_.*)?$": "a street address",
    r"^(ssn|social_security(_number|_no)?|sin|national_id|national_insurance(_number)?|nino|passport(_number)?|"
    r"driver_?s?_licen[cs]e(_number)?)$": "a social security, national ID or licence number",
    r"^(ip|ip_address|url|web_address)$": "an IP address or URL",
}
#: ZIP / postal code columns are refused when any value has more than three characters (Safe Harbor allows
#: the first three digits of a ZIP code only).
ZIP_PATTERN = r"^(zip|zip_?code|zipcode|post_?code|postal_?code|zip5|zip9)$"

_CODE_ALPHABET = np.frombuffer(b"0123456789ABCDEFGHJKMNPQRSTVWXYZ", dtype=np.uint8)  # Crockford base32


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def find_identifier_columns(frame: pl.DataFrame) -> list[tuple[str, str]]:
    """Columns of ``frame`` that look like direct identifiers.

    Parameters
    ----------
    frame : polars.DataFrame
        Raw source columns (a ZIP-like column is inspected: more than three characters is an identifier).

    Returns
    -------
    list of (str, str)
        ``(column, what it looks like)`` for every suspicious column, in frame order.
    """
    found: list[tuple[str, str]] = []
    for column in frame.columns:
        norm = _normalise(column)
        if not norm:
            continue
        kind = next((k for pat, k in IDENTIFIER_KINDS.items() if re.match(pat, norm)), None)
        if kind is None and re.match(ZIP_PATTERN, norm):
            longest = frame.select(
                pl.col(column).cast(pl.String).str.replace_all(r"\s", "").str.len_chars().max()
            ).item()
            if longest is not None and longest > 3:
                kind = "a ZIP or postal code longer than 3 characters"
        if kind is not None:
            found.append((column, kind))
    return found


def check_identifiers(frame: pl.DataFrame, path: str) -> None:
    """Raise :class:`IdentifierColumnError` if ``frame`` has a direct-identifier column.

    The message names each column and gives the ``pseudonymize`` command that fixes the file.
    """
    found = find_identifier_columns(frame)
    if not found:
        return
    listed = "; ".join(f"{c!r} looks like {k}" for c, k in found)
    first = found[0][0]
    command = (
        f"sciatica-outcomes pseudonymize {path} --column {first} --as patient_id --key KEY.csv --out OUT"
    )
    raise IdentifierColumnError(
        f"{path}: refused, direct identifiers must not enter the store ({listed}). Replace the identifier "
        f"with a random code and drop the others, e.g. `{command}` (keep KEY.csv apart from the data)"
    )


def random_codes(n: int, prefix: str = "P", length: int = 10, *, avoid: set[str] | None = None) -> list[str]:
    """``n`` distinct random codes ``prefix + length`` Crockford base-32 characters from ``os.urandom``.

    Each code carries ``5 * length`` random bits (50 by default); codes in ``avoid`` and repeats are
    redrawn.
    """
    avoid = set(avoid or ())
    out: list[str] = []
    seen = set(avoid)
    while len(out) < n:
        need = n - len(out)
        idx = np.frombuffer(os.urandom(need * length), dtype=np.uint8) % 32
        chars = _CODE_ALPHABET[idx].reshape(need, length)
        codes = [prefix + row.tobytes().decode("ascii") for row in chars]
        for code in codes:
            if code not in seen:
                seen.add(code)
                out.append(code)
    return out


@dataclass(frozen=True)
class PseudonymizeResult:
    """What :func:`pseudonymize` did."""

    out: Path
    key: Path
    rows: int
    identifiers: int
    new_codes: int
    reused_codes: int
    dropped: tuple[str, ...]


def _read_any(path: Path) -> pl.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv", ".tsv", ".txt"):
        raise UnusableInputError(
            f"{path}: pseudonymize reads CSV or Parquet files, got {suffix or 'no suffix'}"
        )
    try:
        if suffix in (".parquet", ".pq"):
            return pl.read_parquet(path)
        from sciatica_outcomes.ingest.readers import sniff_csv  # noqa: PLC0415

        raw = path.read_bytes()
        encoding, delimiter, _ = sniff_csv(raw[: 1 << 16])
        data = raw.decode(encoding).lstrip("\ufeff").encode("utf-8")
        return pl.read_csv(data, separator=delimiter, infer_schema=False)
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnusableInputError(f"{path}: cannot read as {suffix[1:]}: {first}; check the file") from exc


#: Columns of the key file (the crosswalk).
_KEY_SCHEMA = {"column": pl.String, "identifier": pl.String, "code": pl.String}


def _read_key(key: Path) -> pl.DataFrame:
    """The crosswalk as written by :func:`pseudonymize` (cells neutralised for spreadsheets are restored)."""
    if not key.exists():
        return pl.DataFrame(schema=_KEY_SCHEMA)
    try:
        existing = pl.read_csv(key, schema=_KEY_SCHEMA)
    except pl.exceptions.PolarsError as exc:
        raise UnusableInputError(
            f"--key {key} is not a key file written by pseudonymize (expected the columns column, "
            "identifier, code): pass the key file of these codes, or a new path"
        ) from exc
    return restore_cells(existing)


def pseudonymize(
    path: str | Path,
    column: str,
    *,
    key: str | Path,
    out: str | Path,
    new_name: str = "patient_id",
    drop: tuple[str, ...] | list[str] = (),
    prefix: str = "P",
) -> PseudonymizeResult:
    """Replace an identifier column with random codes and keep the crosswalk in a separate key file.

    Parameters
    ----------
    path : str or Path
        CSV or Parquet file holding the identifier.
    column : str
        Identifier column to replace (e.g. ``mrn``).
    key : str or Path
        Key file (CSV with ``column, identifier, code``). Created if missing; if it exists, identifiers
        already in it keep their code and only new identifiers get new codes. Store it apart from the data.
    out : str or Path
        Output file (same format as the input); must differ from ``path`` and ``key``.
    new_name : str
        Name of the code column in the output (default ``patient_id``).
    drop : sequence of str
        Other identifier columns to remove (names, phone numbers, ...).
    prefix : str
        First characters of every new code.

    Returns
    -------
    PseudonymizeResult
        Counts of rows, distinct identifiers, new and reused codes.

    Raises
    ------
    UnusableInputError
        Unknown columns, output or key equal to the input, output equal to the key, an unreadable input or
        key file, or identifier columns left in the output.

    Notes
    -----
    The key file is created readable and writable by its owner only (mode 0600, before any identifier is
    written to it) and replaced atomically. Both CSV files are written by
    :func:`~sciatica_outcomes.outputs.write_safe_csv`: a cell a spreadsheet would run as a formula
    (``=HYPERLINK(...)``, ``@SUM(...)``, ``-1-1``) gets a leading apostrophe; the key file's cells are
    restored exactly when it is read back.
    """
    path, key, out = Path(path), Path(key), Path(out)
    if key.resolve() == path.resolve():
        raise UnusableInputError(
            f"--key {key} is the input file: the key file must be a separate file, kept apart from the data"
        )
    if out.resolve() in (path.resolve(), key.resolve()):
        raise UnusableInputError(f"--out {out} must differ from the input file and the key file")
    frame = _read_any(path)
    missing = [c for c in (column, *drop) if c not in frame.columns]
    if missing:
        raise UnusableInputError(
            f"{path}: no column(s) {', '.join(missing)}; columns are {', '.join(frame.columns)}"
        )
    ids = frame[column].cast(pl.String)
    key_schema = _KEY_SCHEMA
    existing = _read_key(key)
    mine = existing.filter(pl.col("column") == column)
    distinct = ids.drop_nulls().unique(maintain_order=True)
    new_ids = distinct.filter(~distinct.is_in(mine["identifier"].implode()))
    codes = random_codes(new_ids.len(), prefix, avoid=set(existing["code"].to_list()))
    added = pl.DataFrame(
        {"column": [column] * new_ids.len(), "identifier": new_ids, "code": codes}, schema=key_schema
    )
    crosswalk = pl.concat([mine, added])
    coded = ids.replace_strict(
        crosswalk["identifier"], crosswalk["code"], default=None, return_dtype=pl.String
    )
    result = frame.with_columns(coded.alias(column)).drop(list(drop)).rename({column: new_name})
    left = find_identifier_columns(result)
    if left:
        raise UnusableInputError(
            f"{path}: identifier column(s) {', '.join(c for c, _ in left)} would remain in the output; "
            "add --drop for each"
        )
    write_safe_csv(pl.concat([existing, added]), key, mode=0o600)
    if out.suffix.lower() in (".parquet", ".pq"):
        out.parent.mkdir(parents=True, exist_ok=True)
        result.write_parquet(out)
    else:
        write_safe_csv(result, out)
    return PseudonymizeResult(
        out=out,
        key=key,
        rows=frame.height,
        identifiers=distinct.len(),
        new_codes=new_ids.len(),
        reused_codes=distinct.len() - new_ids.len(),
        dropped=tuple(drop),
    )
