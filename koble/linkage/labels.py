"""Norwegian labels and code lists for the variables koble delivers (design.md §1.5).

Every delivery documents its variables with a label and, where the values are codes, a
code list; the Stata and SPSS files carry both, the codebook lists them. This module holds
them for every variable of the synthetic world (its ``registries.toml``,
:func:`koble.linkage.sources.synthetic_schemas`) and for ``lopenr``, the project's serial
number. The codes are the ones ``koble.synth`` writes; ``tests/linkage/test_formats.py``
checks them against the generators so the two cannot drift apart. Variables whose values
come from an external classification (ICD-10, ATC, kommunenummer) carry no code list here:
they are named in :data:`CLASSIFICATIONS`.

:data:`IDENTIFYING` flags variables that identify a person or lead straight back to one:
``lopenr`` (the key to the key list), dates of birth and death and the kommune (strong
quasi-identifiers), the prescriber's HPR number (it identifies a person, the prescriber)
and NPR's ``episode_id`` (the registry can map it back to a fødselsnummer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = [
    "CLASSIFICATIONS",
    "IDENTIFYING",
    "LABELS",
    "LINK_METHODS",
    "LINK_METHOD_CODES",
    "VALUE_LABELS",
    "labels_for",
]

LABELS: Final[Mapping[str, str]] = {
    "lopenr": "Løpenummer (prosjektspesifikt)",
    # NPR
    "episode_id": "Episode-ID (NPR)",
    "start_date": "Startdato",
    "end_date": "Sluttdato",
    "care_level": "Omsorgsnivå",
    "icd10_main": "Hovedtilstand (ICD-10)",
    "institution_orgnr": "Organisasjonsnummer for institusjon",
    # Dødsårsaksregisteret
    "death_date": "Dødsdato",
    "underlying_cause": "Underliggende dødsårsak (ICD-10)",
    # MFR
    "birth_date": "Fødselsdato",
    "child_sex": "Barnets kjønn",
    "plurality": "Antall fostre",
    "gestational_week": "Svangerskapsvarighet (uker)",
    "birth_weight_g": "Fødselsvekt (gram)",
    "mother_age": "Mors alder ved fødsel (år)",
    "delivery": "Forløsningsmåte",
    "smoking": "Røyking",
    "art": "Assistert befruktning",
    # Kreftregisteret
    "diagnosis_date": "Diagnosedato",
    "icd10": "Kreftdiagnose (ICD-10)",
    "morphology": "Morfologi (ICD-O-3)",
    "stage": "Stadium",
    # Hoftebruddregisteret
    "procedure_date": "Operasjonsdato",
    "fracture_type": "Bruddtype",
    "operation": "Operasjonsmetode",
    "asa_class": "ASA-klasse",
    "consent": "Samtykke",
    "consent_date": "Samtykkedato",
    # SSB
    "nus_level": "Utdanningsnivå (NUS)",
    "year": "År",
    "income": "Samlet inntekt (kroner)",
    # Reseptregisteret
    "prescriber_hpr": "Forskriverens HPR-nummer",
    "atc": "Legemiddel (ATC-kode)",
    "ddd": "Antall definerte døgndoser (DDD)",
    "quantity": "Antall pakninger",
    "dispensing_date": "Utleveringsdato",
    "pharmacy_id": "Apotek-ID",
    # IPLOS
    "kommune": "Kommunenummer",
    "service_type": "Tjenestetype",
    "social_participation": "Sosial deltakelse",
    "household": "Alminnelig husarbeid",
    "shopping": "Skaffe seg varer og tjenester",
    "cooking": "Lage mat",
    "personal_hygiene": "Personlig hygiene",
    "dressing": "Kle av og på seg",
    "eating": "Spise",
    "toilet": "Toalett",
    "mobility_indoor": "Bevege seg innendørs",
    "memory": "Hukommelse",
    # Abortregisteret
    "age_group": "Aldersgruppe",
    "fylke": "Fylkesnummer",
    "method": "Metode",
    # Helsearkivregisteret
    "journal_id": "Journal-ID (Helsearkivregisteret)",
    "orgnr": "Organisasjonsnummer for helseforetak",
    "first_contact": "Første kontakt",
    "last_contact": "Siste kontakt",
    "diagnosis": "Diagnose (ICD-10)",
    "sex": "Kjønn",
    # identity recovery (koble.recovery): how the person (or record) was linked
    "link_method": "Koblingsmetode",
    "match_probability": "Koblingssannsynlighet",
    "match_weight": "Koblingsvekt (bits, log2 Bayes-faktor; tom for eksakt og reparert)",
}

#: IPLOS functional scores: 1 = no help needed ... 5 = full help.
_IPLOS_SCORE: Final[Mapping[Any, str]] = {
    1: "Ingen hjelpebehov",
    2: "Utfører selv, men med noe vansker",
    3: "Behov for noe bistand",
    4: "Behov for mye bistand",
    5: "Behov for full bistand",
}
_SCORES: Final = ("social_participation", "household", "shopping", "cooking",
                  "personal_hygiene", "dressing", "eating", "toilet", "mobility_indoor",
                  "memory")  # fmt: skip

#: How a person or record was linked (koble.recovery.contract.METHODS), delivered as an
#: integer code so that Stata and SPSS carry the code list too.
LINK_METHOD_CODES: Final[Mapping[str, int]] = {
    "exact": 1, "repaired": 2, "probabilistic": 3, "clerical": 4,
}  # fmt: skip
LINK_METHODS: Final[Mapping[Any, str]] = {
    1: "exact: gyldig fødselsnummer",
    2: "repaired: reparert fødselsnummer (ett siffer eller ombytting)",
    3: "probabilistic: probabilistisk kobling (navn, fødselsdato, kjønn)",
    4: "clerical: manuelt vurdert kobling",
}

VALUE_LABELS: Final[Mapping[str, Mapping[Any, str]]] = {
    "care_level": {"inpatient": "Døgnopphold", "day": "Dagbehandling",
                   "outpatient": "Poliklinisk kontakt"},
    "child_sex": {"F": "Jente", "M": "Gutt"},
    "plurality": {1: "Enkeltfødsel", 2: "Tvillingfødsel"},
    "delivery": {"vaginal": "Vaginal fødsel", "operative_vaginal": "Operativ vaginal fødsel",
                 "caesarean": "Keisersnitt"},
    "stage": {"I": "Stadium I", "II": "Stadium II", "III": "Stadium III", "IV": "Stadium IV",
              "unknown": "Ukjent stadium"},
    "smoking": {"never": "Aldri røykt", "former": "Tidligere røyker", "current": "Røyker",
                "unknown": "Ukjent"},
    "fracture_type": {"femoral_neck": "Lårhalsbrudd", "trochanteric": "Trokantært brudd",
                      "subtrochanteric": "Subtrokantært brudd"},
    "operation": {"hemiarthroplasty": "Hemiprotese", "screw_osteosynthesis": "Skruer",
                  "sliding_hip_screw": "Glideskrue", "intramedullary_nail": "Margnagle"},
    "asa_class": {1: "Frisk", 2: "Mild systemsykdom", 3: "Alvorlig systemsykdom",
                  4: "Livstruende systemsykdom", 5: "Moribund"},
    "consent": {True: "Samtykket", False: "Ikke samtykket"},
    "nus_level": {0: "Ingen utdanning", 1: "Barneskole", 2: "Ungdomsskole",
                  3: "Videregående, grunnutdanning", 4: "Videregående, avsluttende",
                  5: "Påbygging til videregående", 6: "Universitet/høgskole, lavere nivå",
                  7: "Universitet/høgskole, høyere nivå", 8: "Forskerutdanning"},
    "service_type": {"home_nursing": "Hjemmesykepleie",
                     "practical_assistance": "Praktisk bistand",
                     "safety_alarm": "Trygghetsalarm", "day_care": "Dagaktivitetstilbud",
                     "nursing_home_short_term": "Korttidsopphold i institusjon",
                     "nursing_home_long_term": "Langtidsopphold i institusjon",
                     "personal_assistance": "Brukerstyrt personlig assistanse"},
    **{score: _IPLOS_SCORE for score in _SCORES},
    "age_group": {"<20": "Under 20 år", "20-24": "20–24 år", "25-29": "25–29 år",
                  "30-34": "30–34 år", "35-39": "35–39 år", "40+": "40 år og eldre"},
    "method": {"medical": "Medikamentell", "surgical": "Kirurgisk"},
    "link_method": LINK_METHODS,
}  # fmt: skip

#: External classifications whose code lists are too long to repeat in every delivery.
CLASSIFICATIONS: Final[Mapping[str, str]] = {
    "icd10_main": "ICD-10",
    "underlying_cause": "ICD-10",
    "icd10": "ICD-10",
    "diagnosis": "ICD-10",
    "morphology": "ICD-O-3",
    "atc": "ATC (WHO)",
    "kommune": "Kommunenummer (SSB, 2024)",
    "fylke": "Fylkesnummer (SSB, 2024)",
}

IDENTIFYING: Final[frozenset[str]] = frozenset(
    {"lopenr", "birth_date", "death_date", "kommune", "prescriber_hpr", "episode_id", "journal_id"}
)


def labels_for(columns: Iterable[str]) -> tuple[dict[str, str], dict[str, Mapping[Any, str]]]:
    """Variable labels and code lists for ``columns``, keyed by column name.

    A column without a known label is labelled with its own name, so every delivered
    variable has a label; code lists are given only where they are known.
    """
    cols = list(columns)
    labels = {c: LABELS.get(c, c) for c in cols}
    value_labels = {c: VALUE_LABELS[c] for c in cols if c in VALUE_LABELS}
    return labels, value_labels
