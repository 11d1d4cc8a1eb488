"""Norwegian identifiers: one small module per identifier, plus a column API.

* :mod:`.fodselsnummer`: fødselsnummer, D-, H-, FH- and synthetic test numbers, classic and
  2032 check-digit rules.
* :mod:`.hpr`: health-personnel numbers (Helsepersonellregisteret).
* :mod:`.orgnr`: organisasjonsnummer.
* :func:`.column.validate_column`: the same rules over a whole column at once.
* :func:`.check.check_file`: a whole file's identifier column, with rejects and counts.
"""

from koble.registries.identifiers import fodselsnummer, hpr, orgnr
from koble.registries.identifiers._rules import Kind, Reason, Rule
from koble.registries.identifiers.column import validate_column

__all__ = ["Kind", "Reason", "Rule", "fodselsnummer", "hpr", "orgnr", "validate_column"]
