"""Verbatim copies of the seed texts the bundled catalogue quotes, one TOML file each."""
