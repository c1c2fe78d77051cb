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
from sciatica_outcomes.ingest.privacy import header_tokens, identifier_header


def _words(text: str, sep: str | None = None) -> list[str]:
    return text.split(sep)


#: The 24 headers of issue 12 that used to pass, then English variants, then the clinics' languages.
ISSUE_HEADERS = _words(
    "mrn_number patient_mrn medicalrecordnumber hospital_id nhsnumber NHS_ID ssn_last4 dateofbirth birth_dt "
    "dob_date pt_name patientname name_first cell contact_number emailaddr mail addr1 insurance_id "
    "medicaid_id passport_no patient_initials guardian_name next_of_kin"
)
IDENTIFIER_HEADERS = ISSUE_HEADERS + _words(
    "name,Patient Name,first_name,surname,MRN,medical_record_number,DOB,date_of_birth,birthdate,phone,"
    "mobile_phone,Email,e-mail,address,street_address,SSN,nhs_number,PatientName,FirstName,lastName,LAST_NAME,"
    "Full-Name,given_name,family_name,middle_name,maiden_name,forename,Initials,client_name,therapist_name,"
    "MedicalRecordNo,record_number,chart_no,patient_number,PatientNo,hospital_number,member_id,subscriber_id,"
    "health_card_number,account_number,policy_number,medicare_no,insurance_number,Birthday,birth_date,"
    "DateOfBirth,d.o.b,home_phone,PhoneNumber,telephone,tel,Tel_No,cellphone,cell_number,mobile,fax,"
    "contactNumber,email_address,EMail,e_mail,mail_address,address_line_1,Address2,street,city,home_address,"
    "social_security_number,SocialSecurityNo,national_id,NationalInsuranceNumber,NINO,passport_number,"
    "driver_license,ip_address,url,guardian,parent_guardian,next_of_kin_phone,NextOfKin,emergency_contact,"
    # German
    "Geburtsdatum,geb_datum,Telefon,Handynummer,Adresse,Anschrift,Straße,Vorname,Nachname,initialen,"
    "versichertennummer,sozialversicherungsnummer,Krankenversicherungsnummer,Patientennummer,Vormund,"
    # Spanish
    "fecha_de_nacimiento,fecha_nacimiento,teléfono,móvil,celular,correo_electronico,dirección,domicilio,"
    "nombre,apellidos,Nombre_Completo,iniciales,DNI,NIE,NSS,historia_clinica,NHC,tutor,"
    # French
    "date_de_naissance,DDN,portable,courriel,rue,prénom,nom,nom_de_famille,NIR,"
    # Dutch
    "geboortedatum,telefoon,adres,straat,voornaam,achternaam,BSN,burgerservicenummer,"
    # Norwegian, Swedish, Danish
    "fødselsdato,fødselsnummer,mobilnummer,e-post,epost,gateadresse,navn,fornavn,etternavn,pårørende,"
    "journalnummer,födelsedatum,personnummer,gatuadress,förnamn,efternamn,namn,anhörig,vårdnadshavare,CPR_nummer",
    ",",
)


def test_the_identifier_matrix_is_large_and_holds_the_issue_headers() -> None:
    assert len(set(IDENTIFIER_HEADERS)) == len(IDENTIFIER_HEADERS) >= 150
    assert len(ISSUE_HEADERS) == 24


@pytest.mark.parametrize("name", IDENTIFIER_HEADERS)
def test_identifier_headers_are_refused(name: str) -> None:
    assert [c for c, _ in find_identifier_columns(pl.DataFrame({name: ["x"]}))] == [name]


def test_the_refusal_names_the_column_the_token_and_the_command() -> None:
    frame = pl.DataFrame({"Patient_MRN": ["1"], "age_at_start": ["40"], "Fødselsdato": ["1970-01-02"]})
    with pytest.raises(IdentifierColumnError) as err:
        check_identifiers(frame, "episodes.csv")
    assert str(err.value) == (
        "episodes.csv: refused, direct identifiers must not enter the store ('Patient_MRN' looks like a "
        "medical record, health plan or account number (matched 'mrn'); 'Fødselsdato' looks like a date of "
        "birth (matched 'fodselsdato')). Replace the identifier with a random code and drop the others, e.g. "
        "`sciatica-outcomes pseudonymize episodes.csv --column Patient_MRN --as patient_id --key KEY.csv "
        "--out OUT` (keep KEY.csv apart from the data)"
    )


def test_header_tokens_fold_accents_and_split_camel_case_and_digits() -> None:
    assert header_tokens("PatientMRN_number") == ["patient", "mrn", "number"]
    assert header_tokens("Straße-Nr.2") == ["strasse", "nr", "2"]
    assert header_tokens("  vårdnadsHavare ") == ["vardnads", "havare"]
    assert identifier_header("vårdnadshavare") == ("a guardian or next of kin", "vardnadshavare")


#: Headers that are not identifiers. Decisions: ``name`` qualified by a thing (``exercise_name``,
#: ``name_of_exercise``, ``clinic_name``) is not a person's name; ``initial_nprs`` is a baseline, not
#: initials; ``first_contact_date`` is a date of the episode; REDCap's ``record_id`` is the project's code.
CLINICAL_HEADERS = _words(
    "nprs_leg walk_tolerance_min pain_after name_of_exercise exercise_name clinic_name program_name "
    "instrument_name record_id redcap_event_name redcap_repeat_instrument redcap_repeat_instance "
    "redcap_data_access_group zip3 band note notes comment grc visit_date initial_nprs first_visit "
    "last_session first_contact_date post_pain arm site_id study_id hospital_name mobility_score "
    "ip_joint_pain dias_sin_dolor nombre_ejercicio Übungsname session_name visit_type_name"
)


def _canonical_columns() -> list[str]:
    from sciatica_outcomes.schemas import TABLE_SPECS, measure_catalog  # noqa: PLC0415

    columns = {c for spec in TABLE_SPECS.values() for c in spec.dtypes}
    return sorted(columns | set(measure_catalog()["code"].to_list()))


@pytest.mark.parametrize("name", _canonical_columns() + CLINICAL_HEADERS)
def test_canonical_and_clinical_headers_pass(name: str) -> None:
    assert identifier_header(name) is None
    assert find_identifier_columns(pl.DataFrame({name: ["946"]})) == []


def test_every_canonical_table_column_is_in_the_pass_list() -> None:
    from sciatica_outcomes.schemas import TABLE_SPECS  # noqa: PLC0415

    assert {"patient_id", "clinic_id", "therapist_id", "session_id", "program"} <= set(_canonical_columns())
    assert sum(len(s.dtypes) for s in TABLE_SPECS.values()) >= 50


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


IDENTIFIER_VALUES = {
    "123-45-6789": "[SSN]",
    "123 45 6789": "[SSN]",
    "555-123-4567": "[phone]",
    "(555) 123-4567": "[phone]",
    "+47 22 33 44 55": "[phone]",
    "+4722334455": "[phone]",
    "jane.roe@example.org": "[e-mail]",
    "850101-1234": "[national ID]",
    "19850101-1234": "[national ID]",
    "1970-01-02": "[date]",
    "02.01.1970": "[date]",
    "12/31/70": "[date]",
    "010170-1234": "[national ID]",
    "MRN00123456": "[MRN]",
    "mrn-00123456": "[MRN]",
}
CODES = [
    "PT000005",
    "EP000001",
    "SE00000001",
    "TH0082",
    "CL08",
    "E12-3",
    "S-001-0002",
    "EP.2024.001",
    "20240101",
]


def test_identifier_shaped_codes_are_named_and_real_codes_are_not() -> None:
    from sciatica_outcomes.ingest.privacy import identifier_value_kind, identifier_value_label  # noqa: PLC0415

    values = pl.DataFrame({"v": [*IDENTIFIER_VALUES, *CODES]})
    got = values.select(
        identifier_value_label(pl.col("v")).alias("v"), identifier_value_kind(pl.col("v")).alias("k")
    )
    assert got["v"].to_list() == [*IDENTIFIER_VALUES.values()] + [None] * len(CODES)
    assert got["k"][0] == "a social security number (NNN-NN-NNNN)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "call Jane Roe on 555-123-4567 or jane.roe@example.org, DOB 1970-01-02, MRN 00123456",
            "call [name] on [phone] or [e-mail], [date of birth], [MRN]",
        ),
        ("Dr. Müller, Tel +49 30 1234 5678, geb. 02.01.1970", "Dr. [name], Tel [phone], [date of birth]"),
        ("SSN 123-45-6789; personnummer 850101-1234", "SSN [SSN]; personnummer [national ID]"),
        ("NHS number 485 777 3456", "[MRN]"),
    ],
)
def test_free_text_identifiers_are_redacted(text: str, expected: str) -> None:
    from sciatica_outcomes.ingest.privacy import redact_free_text  # noqa: PLC0415

    assert pl.DataFrame({"t": [text]}).select(redact_free_text(pl.col("t"))).item() == expected


@pytest.mark.parametrize(
    "text",
    [
        "2.1a",
        "strength_12wk",
        "graded walking 3x/week from 2024-01-02",
        "+2 sets",
        "<U+200B>",
        "ODI v2.1 (EN)",
    ],
)
def test_clinical_free_text_is_left_alone(text: str) -> None:
    from sciatica_outcomes.ingest.privacy import free_text_redactions  # noqa: PLC0415

    frame = pl.DataFrame({"t": [text, None]})
    redacted, counts, cells = free_text_redactions(frame, "t")
    assert redacted.to_list() == [text, None] and counts == {} and cells == 0


def test_free_text_redactions_are_counted_per_kind_and_cell() -> None:
    from sciatica_outcomes.ingest.privacy import free_text_redactions  # noqa: PLC0415

    frame = pl.DataFrame({"t": ["a@b.org and c@d.org", "plain", "555-123-4567"]})
    redacted, counts, cells = free_text_redactions(frame, "t")
    assert redacted.to_list() == ["[e-mail] and [e-mail]", "plain", "[phone]"]
    assert counts == {"e-mail": 2, "phone": 1} and cells == 2
