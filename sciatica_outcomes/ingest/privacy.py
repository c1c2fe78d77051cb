"""Privacy at the door: refuse direct identifiers; replace them with random codes kept in a separate key file.

Column names are split into normalised tokens (:func:`header_tokens`: accents folded, camel case, digits and
separators split, lower case) and matched against a vocabulary (:data:`IDENTIFIER_VOCABULARY`, in English and
in the Spanish, French, German, Dutch and Scandinavian forms of the clinics' exports) of the direct
identifiers of HIPAA Safe Harbor (45 CFR 164.514(b)(2)) that clinic exports commonly carry: names, medical
record numbers, dates of birth, phone and fax numbers, e-mail addresses, street addresses, social security and
national insurance numbers, and ZIP or postal codes longer than three characters. A file with such a column is
refused as a whole; :func:`pseudonymize` replaces the column with random codes and writes the crosswalk to a
key file that is stored apart from the data.

Codes are random (``os.urandom``), never derived from the identifier: 45 CFR 164.514(c) forbids
re-identification codes derived from individual information, and a hash of an MRN can be reversed by hashing
every possible MRN. Re-running with the same key file reuses the codes already issued.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from sciatica_outcomes.errors import IdentifierColumnError, UnusableInputError
from sciatica_outcomes.outputs import restore_cells, write_safe_csv

__all__ = [
    "IDENTIFIER_VOCABULARY",
    "NOT_A_PERSON",
    "ZIP_TOKENS",
    "PseudonymizeResult",
    "check_identifiers",
    "find_identifier_columns",
    "header_tokens",
    "identifier_header",
    "pseudonymize",
    "random_codes",
]

#: What a header token means, with the tokens, phrases and word stems that mean it. Column names are
#: normalised (:func:`header_tokens`) before matching: accents folded (``ø`` -> ``o``, ``ß`` -> ``ss``),
#: camel case and letter/digit boundaries split, lower-cased, split on anything that is not a letter or
#: digit. A header is an identifier when one of its tokens is in ``tokens``, when consecutive tokens form
#: one of ``phrases``, or when a token contains one of ``stems`` (compounds written without separators:
#: ``dateofbirth``, ``medicalrecordnumber``, ``fodselsnummer``). Vocabulary: English plus the Spanish,
#: French, German, Dutch and Scandinavian (Norwegian, Swedish, Danish) forms of the clinics' exports.
IDENTIFIER_VOCABULARY: tuple[
    tuple[str, frozenset[str], tuple[tuple[str, ...], ...], tuple[str, ...]], ...
] = (
    (
        "a social security, national ID or licence number",
        frozenset(
            {
                "ssn",
                "nir",
                "nss",
                "dni",
                "nie",
                "nif",
                "bsn",
                "cpr",
                "fnr",
                "kvnr",
                "personnr",
                "passport",
                "pasaporte",
                "passeport",
                "reisepass",
                "passnummer",
                "passnr",
                "nino",
            }
        ),
        (
            ("social", "security"),
            ("seguridad", "social"),
            ("securite", "sociale"),
            ("national", "id"),
            ("national", "insurance"),
            ("national", "number"),
            ("driver", "license"),
            ("driver", "licence"),
            ("drivers", "license"),
            ("drivers", "licence"),
            ("driving", "licence"),
            ("tax", "id"),
        ),
        (
            "socialsecurity",
            "passport",
            "sozialversicherung",
            "burgerservicenummer",
            "fodselsnummer",
            "personnummer",
            "versichertennummer",
            "nationalid",
            "driverslicen",
            "driverlicen",
        ),
    ),
    (
        "a medical record, health plan or account number",
        frozenset(
            {
                "mrn",
                "nhs",
                "nhc",
                "ipp",
                "insurance",
                "medicaid",
                "medicare",
                "seguro",
                "versicherung",
                "journalnummer",
                "journalnr",
                "patientennummer",
                "patientnummer",
                "pasientnummer",
                "fallnummer",
                "dossier",
            }
        ),
        (
            ("medical", "record"),
            ("record", "number"),
            ("record", "no"),
            ("record", "num"),
            ("record", "nr"),
            ("hospital", "id"),
            ("hospital", "number"),
            ("hospital", "no"),
            ("hospital", "nr"),
            ("chart", "number"),
            ("chart", "no"),
            ("patient", "number"),
            ("patient", "no"),
            ("patient", "nr"),
            ("patient", "num"),
            ("health", "card"),
            ("member", "id"),
            ("subscriber", "id"),
            ("account", "number"),
            ("account", "no"),
            ("policy", "number"),
            ("historia", "clinica"),
            ("journal", "number"),
            ("journal", "nr"),
        ),
        (
            "medicalrecord",
            "recordnumber",
            "hospitalnumber",
            "hospitalid",
            "nhsnumber",
            "nhsno",
            "insurance",
            "medicaid",
            "medicare",
            "healthcard",
            "krankenversicherung",
            "patientnumber",
            "chartnumber",
        ),
    ),
    (
        "a date of birth",
        frozenset({"dob", "ddn", "bday", "birthday", "geburtstag"}),
        (
            ("date", "of", "birth"),
            ("fecha", "de", "nacimiento"),
            ("date", "de", "naissance"),
            ("geb", "datum"),
            ("d", "o", "b"),
        ),
        ("birth", "geburt", "naissance", "nacimiento", "nascita", "fodsel", "fodelse", "geboorte"),
    ),
    (
        "a person's name",
        frozenset(
            {
                "name",
                "names",
                "surname",
                "forename",
                "firstname",
                "lastname",
                "fullname",
                "initials",
                "nombre",
                "nombres",
                "apellido",
                "apellidos",
                "iniciales",
                "nom",
                "prenom",
                "initiales",
                "vorname",
                "nachname",
                "familienname",
                "initialen",
                "navn",
                "fornavn",
                "etternavn",
                "namn",
                "fornamn",
                "efternamn",
                "initialer",
                "naam",
                "voornaam",
                "achternaam",
            }
        ),
        (),
        (
            "surname",
            "forename",
            "firstname",
            "lastname",
            "fullname",
            "givenname",
            "familyname",
            "middlename",
            "maidenname",
            "patientname",
            "clientname",
            "personname",
            "ptname",
            "guardianname",
            "nickname",
        ),
    ),
    (
        "a guardian or next of kin",
        frozenset(
            {
                "guardian",
                "kin",
                "tutor",
                "tuteur",
                "vormund",
                "verge",
                "voogd",
                "parorende",
                "anhorig",
                "anhoriga",
                "angehorige",
                "angehoriger",
            }
        ),
        (("next", "of", "kin"), ("emergency", "contact"), ("god", "man")),
        ("guardian", "nextofkin", "vardnadshavare"),
    ),
    (
        "a phone or fax number",
        frozenset(
            {
                "phone",
                "tel",
                "telephone",
                "mobile",
                "cell",
                "cellphone",
                "fax",
                "handy",
                "mobil",
                "mobiel",
                "movil",
                "celular",
                "portable",
                "telefoon",
            }
        ),
        (
            ("contact", "number"),
            ("contact", "no"),
            ("contact", "nr"),
            ("contact", "details"),
            ("contact", "info"),
        ),
        (
            "phone",
            "telefon",
            "telefono",
            "mobilnummer",
            "mobilnr",
            "handynummer",
            "contactnumber",
            "cellnumber",
        ),
    ),
    (
        "an e-mail address",
        frozenset({"mail", "email", "courriel", "correo", "epost"}),
        (("e", "post"),),
        ("email", "courriel"),
    ),
    (
        "a street address",
        frozenset(
            {
                "address",
                "addr",
                "street",
                "rue",
                "calle",
                "straat",
                "adres",
                "city",
                "town",
                "county",
                "ciudad",
                "ville",
                "stadt",
                "wohnort",
            }
        ),
        (),
        ("addr", "adress", "street", "strasse", "direccion", "domicilio", "anschrift"),
    ),
    (
        "an IP address or URL",
        frozenset({"url", "website"}),
        (("ip", "address"),),
        ("ipaddress",),
    ),
)

#: Tokens that make ``name`` the name of a thing, not of a person (``exercise_name``, ``name_of_exercise``,
#: ``clinic_name``, ``instrument_name``): such headers are not identifiers.
NOT_A_PERSON: frozenset[str] = frozenset(
    {
        "exercise",
        "exercises",
        "ejercicio",
        "exercice",
        "ubung",
        "ovelse",
        "ovning",
        "program",
        "programme",
        "programa",
        "programm",
        "instrument",
        "measure",
        "questionnaire",
        "item",
        "clinic",
        "clinica",
        "clinique",
        "klinik",
        "site",
        "hospital",
        "file",
        "form",
        "field",
        "event",
        "variable",
        "test",
        "drug",
        "medication",
        "study",
        "protocol",
        "band",
        "arm",
        "device",
        "equipment",
        "product",
        "brand",
        "session",
        "visit",
        "group",
        "category",
        "type",
        "unit",
        "column",
        "sheet",
        "table",
    }
)

#: Tokens (and token pairs) of ZIP / postal code columns. They are refused when any value has more than three
#: characters (Safe Harbor allows the first three digits of a ZIP code only).
ZIP_TOKENS: frozenset[str] = frozenset(
    {
        "zip",
        "zipcode",
        "postcode",
        "postal",
        "postalcode",
        "plz",
        "postleitzahl",
        "postnummer",
        "postnr",
        "cp",
        "zip5",
        "zip9",
    }
)
_ZIP_PHRASES = (("codigo", "postal"), ("code", "postal"), ("post", "code"))

_CODE_ALPHABET = np.frombuffer(b"0123456789ABCDEFGHJKMNPQRSTVWXYZ", dtype=np.uint8)  # Crockford base32


_FOLD = str.maketrans(
    {
        "ß": "ss",
        "ø": "o",
        "Ø": "O",
        "æ": "ae",
        "Æ": "AE",
        "œ": "oe",
        "Œ": "OE",
        "ð": "d",
        "þ": "th",
        "ł": "l",
        "đ": "d",
    }
)


def header_tokens(name: str) -> list[str]:
    """Tokens of a column name: accents folded, camel case and digits split, lower case.

    Examples
    --------
    >>> header_tokens("PatientMRN_number")
    ['patient', 'mrn', 'number']
    >>> header_tokens("Fødselsnummer")
    ['fodselsnummer']
    >>> header_tokens("addr1")
    ['addr', '1']
    """
    text = unicodedata.normalize("NFKD", name.strip().translate(_FOLD))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = re.sub(
        r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])", "_", text
    )
    return [t for t in re.split(r"[^a-z0-9]+", text.lower()) if t]


def _has_phrase(tokens: list[str], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(tuple(tokens[i : i + n]) == phrase for i in range(len(tokens) - n + 1))


def identifier_header(name: str) -> tuple[str, str] | None:
    """What a column name says its column holds, if it is a direct identifier.

    Parameters
    ----------
    name : str
        Column name as written in the source.

    Returns
    -------
    tuple of (str, str) or None
        ``(what it looks like, the token or phrase that matched)``, or None for a column that is not an
        identifier by its name (ZIP codes are judged by their values, see :func:`find_identifier_columns`).

    Notes
    -----
    ``name`` is a person's name unless a token says whose or what's name it is (:data:`NOT_A_PERSON`:
    ``exercise_name``, ``clinic_name``). ``patient_id``, ``clinic_id`` and ``therapist_id`` are the
    pseudonymous codes of the canonical tables and pass; ``hospital_id`` (a hospital's own patient number)
    and ``record_number`` do not. REDCap's ``record_id`` passes (it is the project's record code).
    """
    tokens = header_tokens(name)
    if tokens in (["sin"], ["ip"]):  # too short to be trusted inside a longer name (``ip_joint``)
        kind = "a social security, national ID or licence number" if tokens == ["sin"] else "an IP address"
        return kind, tokens[0]
    for kind, words, phrases, stems in IDENTIFIER_VOCABULARY:
        for token in tokens:
            if token in words or any(stem in token for stem in stems):
                if (
                    kind == "a person's name"
                    and token in ("name", "names", "nombre", "nom", "navn", "namn", "naam")
                    and NOT_A_PERSON.intersection(tokens)
                ):
                    continue
                return kind, token
        for phrase in phrases:
            if _has_phrase(tokens, phrase):
                return kind, " ".join(phrase)
    return None


def _is_zip_header(name: str) -> bool:
    tokens = header_tokens(name)
    return bool(ZIP_TOKENS.intersection(tokens)) or any(_has_phrase(tokens, p) for p in _ZIP_PHRASES)


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
    return [(column, kind) for column, kind, _ in _identifier_columns(frame)]


def _identifier_columns(frame: pl.DataFrame) -> list[tuple[str, str, str]]:
    """``(column, what it looks like, matched token)`` of every identifier column of ``frame``."""
    found: list[tuple[str, str, str]] = []
    for column in frame.columns:
        hit = identifier_header(column)
        if hit is None and _is_zip_header(column):
            longest = frame.select(
                pl.col(column).cast(pl.String).str.replace_all(r"\s", "").str.len_chars().max()
            ).item()
            if longest is not None and longest > 3:
                hit = ("a ZIP or postal code longer than 3 characters", "zip")
        if hit is not None:
            found.append((column, *hit))
    return found


def check_identifiers(frame: pl.DataFrame, path: str) -> None:
    """Raise :class:`IdentifierColumnError` if ``frame`` has a direct-identifier column.

    The message names each column and gives the ``pseudonymize`` command that fixes the file.
    """
    found = _identifier_columns(frame)
    if not found:
        return
    listed = "; ".join(f"{c!r} looks like {k} (matched {t!r})" for c, k, t in found)
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


# ------------------------------------------------------------------------------------ identifier values
_DAY = r"(0[1-9]|[12]\d|3[01])"
_MONTH = r"(0[1-9]|1[0-2])"
#: Swedish/Norwegian personnummer (YYMMDD-NNNN, YYYYMMDD-NNNN) and Danish CPR (DDMMYY-NNNN): the first
#: digits must be a date, so that a code such as ``202401-0001`` is not taken for one.
_PERSONAL_NUMBER = rf"((19|20)?\d{{2}}{_MONTH}{_DAY}|{_DAY}{_MONTH}\d{{2}})[-+]\d{{4}}"
#: An ISO date, or day and month (either order) and a 2- or 4-digit year separated by ``.`` or ``/``.
_DATE = (
    rf"(19|20)\d{{2}}-{_MONTH}-{_DAY}"
    r"|(0?[1-9]|[12]\d|3[01])[./](0?[1-9]|[12]\d|3[01])[./]((19|20)\d{2}|\d{2})"
)

#: Whole values of an id column (``episode_id``, ``patient_id``, ``session_id``, ``clinic_id``,
#: ``therapist_id``) that are identifiers, not pseudonymous codes: ``(label, what it looks like, pattern)``.
#: Each pattern must match the whole value (surrounding spaces ignored); the first that matches names the
#: value. A code such as ``P0001`` or ``E12-3`` matches none.
ID_VALUE_PATTERNS: tuple[tuple[str, str, str], ...] = (
    ("e-mail", "an e-mail address", r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}"),
    ("SSN", "a social security number (NNN-NN-NNNN)", r"\d{3}[- ]\d{2}[- ]\d{4}"),
    ("national ID", "a Nordic personal identity number (YYMMDD-NNNN)", _PERSONAL_NUMBER),
    (
        "phone",
        "a phone number",
        r"(\+\d{1,3}[-. ]?)?\(?\d{3}\)?[-. ]?\d{3}[-. ]\d{4}|\+\d{1,3}([-. ]?\d{2,4}){2,5}",
    ),
    ("date", "a date (a date of birth is an identifier)", _DATE),
    ("MRN", "a medical record number labelled MRN", r"(?i:mrn|nhs|hosp)[^A-Za-z0-9]*\d+"),
)

#: Identifiers found in free text and the placeholder each is replaced with, in the order they are
#: redacted (an e-mail address first, so that its digits are not taken for a phone number). Names are
#: recognised only after a title or a contact verb (``Mr``, ``Dr``, ``call``, ``contact``, ...): free text
#: cannot be searched for every name, so keep names out of it at the source.
FREE_TEXT_PATTERNS: tuple[tuple[str, str, str], ...] = (
    ("e-mail", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", "[e-mail]"),
    (
        "date of birth",
        r"(?i)\b(dob|d\.o\.b\.?|date of birth|birth ?date|born|geb\.?|geboren|f[øoö]dd?|fecha de nacimiento|"
        r"n[ée]e?)[\s:.,]*(on\s+)?\d{1,4}[-./]\d{1,2}[-./]\d{1,4}",
        "[date of birth]",
    ),
    (
        "MRN",
        r"(?i)\b(mrn|medical record( number| no\.?)?|record (number|no\.?)|nhs( number| no\.?)?|"
        r"hospital (number|no\.?))[\s:#.-]*\d([ -]?\d){3,}",
        "[MRN]",
    ),
    ("SSN", r"\b\d{3}-\d{2}-\d{4}\b", "[SSN]"),
    ("national ID", rf"\b{_PERSONAL_NUMBER}\b", "[national ID]"),
    (
        "phone",
        r"\+\d{1,3}[\s.-]?\(?\d{1,4}\)?([\s.-]?\d{2,4}){2,4}|(\(\d{3}\)\s?|\b\d{3}[\s.-])\d{3}[\s.-]\d{4}\b",
        "[phone]",
    ),
    (
        "name",
        r"(\b(?i:call|contact|ring|ask for|mr|mrs|ms|miss|dr|herr|frau|sr|sra|mme)\.?\s+)"
        r"\p{Lu}\p{Ll}+([ -]\p{Lu}\p{Ll}+)?",
        "${1}[name]",
    ),
)
_ANY_FREE_TEXT_IDENTIFIER = "|".join(f"(?:{p})" for _, p, _ in FREE_TEXT_PATTERNS)


def _whole(pattern: str) -> str:
    return rf"^\s*(?:{pattern})\s*$"


_ANY_ID_VALUE = _whole("|".join(f"(?:{p})" for _, _, p in ID_VALUE_PATTERNS))


def looks_like_identifier(values: pl.Expr) -> pl.Expr:
    """Boolean: an id-column value matches one of :data:`ID_VALUE_PATTERNS` (one regex pass)."""
    return values.cast(pl.String).str.contains(_ANY_ID_VALUE)


def identifier_value_kind(values: pl.Expr) -> pl.Expr:
    """What an id-column value looks like (:data:`ID_VALUE_PATTERNS`), or null for a plausible code.

    Parameters
    ----------
    values : polars.Expr
        Text of an id column (surrounding spaces are ignored).

    Returns
    -------
    polars.Expr
        String expression: the description of the first pattern that matches, else null.
    """
    text = values.cast(pl.String)
    out: pl.Expr = pl.lit(None, pl.String)
    for _, what, pattern in reversed(ID_VALUE_PATTERNS):
        out = pl.when(text.str.contains(_whole(pattern))).then(pl.lit(what)).otherwise(out)
    return out


def identifier_value_label(values: pl.Expr) -> pl.Expr:
    """Placeholder (``[SSN]``, ``[phone]``, ...) of an identifier-shaped id value, or null for a code."""
    text = values.cast(pl.String)
    out: pl.Expr = pl.lit(None, pl.String)
    for label, _, pattern in reversed(ID_VALUE_PATTERNS):
        out = pl.when(text.str.contains(_whole(pattern))).then(pl.lit(f"[{label}]")).otherwise(out)
    return out


def redact_free_text(values: pl.Expr) -> pl.Expr:
    """Free text with every :data:`FREE_TEXT_PATTERNS` match replaced by its placeholder.

    Examples
    --------
    >>> frame = pl.DataFrame({"t": ["call Jane Roe on 555-123-4567 or jane.roe@example.org"]})
    >>> frame.select(redact_free_text(pl.col("t"))).item()
    'call [name] on [phone] or [e-mail]'
    """
    out = values.cast(pl.String)
    for _, pattern, placeholder in FREE_TEXT_PATTERNS:
        out = out.str.replace_all(pattern, placeholder)
    return out


def free_text_redactions(frame: pl.DataFrame, column: str) -> tuple[pl.Series, dict[str, int], int]:
    """Redact identifiers in one free-text column of ``frame``.

    Parameters
    ----------
    frame : polars.DataFrame
        Source rows.
    column : str
        A free-text column (read as text).

    Returns
    -------
    tuple
        The redacted column, the number of redactions per kind (kinds with none left out) and the number
        of cells changed. A column without any identifier is returned as it is.
    """
    col = pl.col(column).cast(pl.String)
    if not frame.select(col.str.contains(_ANY_FREE_TEXT_IDENTIFIER).any()).item():
        return frame.get_column(column), {}, 0
    counts: list[pl.Expr] = []
    text = col
    for i, (_, pattern, placeholder) in enumerate(FREE_TEXT_PATTERNS):
        counts.append(text.str.count_matches(pattern).sum().alias(f"n{i}"))
        text = text.str.replace_all(pattern, placeholder)
    got = frame.select(*counts, text.alias("redacted"), (text != col).sum().alias("cells"))
    n = got.select(pl.exclude("redacted", "cells")).row(0)
    per_kind = {kind: int(k) for (kind, _, _), k in zip(FREE_TEXT_PATTERNS, n, strict=True) if k}
    return got.get_column("redacted").alias(column), per_kind, int(got.get_column("cells")[0])


def scrub_text_columns(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """``frame`` with :func:`redact_free_text` applied to ``columns`` (unchanged when nothing matches)."""
    hits = [
        c
        for c, hit in zip(
            columns,
            frame.select(
                pl.col(c).cast(pl.String).str.contains(_ANY_FREE_TEXT_IDENTIFIER).any() for c in columns
            ).row(0)
            if frame.height
            else [False] * len(columns),
            strict=True,
        )
        if hit
    ]
    if not hits:
        return frame
    return frame.with_columns(redact_free_text(pl.col(c)).alias(c) for c in hits)
