"""The bundled registry catalogue: one TOML file per group of entries (see catalogue.md)."""
