"""Reference tables for the generalisation hierarchies (a package so its CSVs ship with koble)."""
