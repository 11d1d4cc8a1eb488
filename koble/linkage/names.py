"""The names of the files a linkage plan moves and keeps, and of the columns it adds: once.

The plan is the only contract between steps (design.md §2.1): the planner declares every
file a step reads or writes, by these names, and a step finds its files among its declared
inputs and outputs (:func:`declared`), never by building a name of its own. A registry id
goes into a name here and nowhere else; nothing parses one back out of a file name (the
plan says which registry a file belongs to).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ANONYMITY_JSON",
    "ANONYMITY_MD",
    "ANONYMOUS",
    "DOCUMENTS",
    "GATE_REPORT",
    "GATE_REPORT_DIR",
    "KEY_LIST",
    "LINKED",
    "LINK_METHODS",
    "MANIFEST",
    "POPULATION_RECOVER",
    "POPULATION_REJECTS",
    "POPULATION_REPORT",
    "WITHHELD",
    "consent_report",
    "consented",
    "declared",
    "delivery",
    "extract",
    "ingest_counts",
    "ingested",
    "persons",
    "persons_fnr",
    "pseudonym_column",
    "recover",
    "recovered",
    "registry_report",
    "resolve_model",
    "resolve_report",
    "resolve_review",
    "resolved",
    "ttp_report",
]

#: The operator's key list (fnr, lopenr): private to the operator.
KEY_LIST = "key_list.parquet"
#: The population rows refused, with their reason, and the population step's counts.
POPULATION_REJECTS = "population_rejects.parquet"
POPULATION_REPORT = "population_report.json"
#: The population records the operator sends the TTP for identity recovery.
POPULATION_RECOVER = "population_recover.parquet"
#: The operator's file of how each person was linked (lopenr, link_method, probability).
LINK_METHODS = "link_methods.parquet"
#: The central route: the extracts linked on lopenr, the rows the gate withheld, the
#: release, and the gate's record and report.
LINKED = "linked.parquet"
WITHHELD = "withheld.parquet"
ANONYMOUS = "anonymous.parquet"
ANONYMITY_JSON = "anonymity.json"
ANONYMITY_MD = "anonymity.md"
#: The gate's report for the applicant (koble.anonymity.report's files), in a folder.
GATE_REPORT_DIR = "anonymity"
GATE_REPORT = tuple(
    f"{GATE_REPORT_DIR}/{file}"
    for file in ("report.md", "report.json", "report.html", "certificate.json")
)
#: What every delivery carries besides the data, and its signed manifest.
DOCUMENTS = ("quality.json", "quality.md", "quality.html", "codebook.md")
MANIFEST = "manifest.json"


def pseudonym_column(registry: str) -> str:
    """The column of a pseudonymous registry's pseudonym (a valid SQL identifier)."""
    return f"pseudonym_{registry}".replace("-", "_")


def persons(registry: str) -> str:
    """The persons a registry is sent (lopenr with fnr or its pseudonym)."""
    return f"{registry}_persons.parquet"


def persons_fnr(registry: str) -> str:
    """The persons the operator sends the TTP to pseudonymise for a registry."""
    return f"{registry}_persons_fnr.parquet"


def ttp_report(registry: str) -> str:
    """The TTP's counts of its pseudonymisation for a registry."""
    return f"{registry}_ttp_report.json"


def consented(registry: str) -> str:
    """The persons whose consent covers the project (a consent-based registry)."""
    return f"{registry}_consented.parquet"


def consent_report(registry: str) -> str:
    """The consent filter's counts, which the registry's extract report carries."""
    return f"{registry}_consent.json"


def extract(registry: str, suffix: str) -> str:
    """A registry's extract, ``suffix`` the file's format (``parquet`` to the operator)."""
    return f"{registry}_extract.{suffix}"


def registry_report(registry: str) -> str:
    """A registry's counts of its extract."""
    return f"{registry}_report.json"


def recover(registry: str) -> str:
    """The records a registry sends the TTP for identity recovery."""
    return f"{registry}_recover.parquet"


def recovered(registry: str) -> str:
    """A registry's table with the numbers the TTP resolved filled in."""
    return f"{registry}_recovered.parquet"


def resolved(scope: str) -> str:
    """What the TTP resolved for ``scope`` (``population`` or a registry id)."""
    return f"{scope}_resolved.parquet"


def resolve_report(scope: str) -> str:
    """The TTP's counts of a resolution."""
    return f"{scope}_resolve_report.json"


def resolve_model(scope: str) -> str:
    """The TTP's record of a resolution's model (kept at the TTP)."""
    return f"{scope}_model.json"


def resolve_review(scope: str) -> str:
    """The pairs a resolution left for review (kept at the TTP)."""
    return f"{scope}_review.parquet"


def ingested(registry: str) -> str:
    """A registry's feed loaded by sealed ingest, kept in its store."""
    return f"{registry}.parquet"


def ingest_counts(registry: str) -> str:
    """The counts of the sealed ingest that loaded a registry's feed."""
    return f"{registry}.ingest.json"


def delivery(suffix: str) -> str:
    """The central route's one delivered file."""
    return f"delivery.{suffix}"


def declared(name: str, *files: Iterable[str]) -> str:
    """``name`` if the step declares it among ``files`` (its inputs or outputs), else a
    ``LookupError``: a step reads and writes only what its plan says it does."""
    for group in files:
        if name in group:
            return name
    raise LookupError(f"the plan does not declare {name!r} for this step")
