"""Identity recovery at the trusted third party: records without a usable fødselsnummer.

A record (a survey answer with a mistyped number, a digitised journal without one) is
resolved to a person of the population register the TTP holds, in a fixed order, and each
resolved record says how: ``exact`` (a valid number of a registered person whose birth date
and sex agree), ``repaired`` (one substitution or adjacent transposition from exactly one
registered person whose birth date, sex and name agree), ``probabilistic`` (a Fellegi–Sunter
model in Splink over names, birth date, sex, death date and places) or ``clerical`` (a
reviewer's decision on a pair the model could not decide). Everything else is unresolved,
with a reason. Names and birth data never leave the TTP (design.md §1.5).

The tables every stage reads and writes are described in :mod:`koble.recovery.contract`.
"""
