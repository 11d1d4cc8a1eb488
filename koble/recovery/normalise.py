"""Norwegian name normalisation as polars expressions: keys that survive how names are written.

A name reaches the TTP written many ways: "Sæther", "Saether", "SÆTHER"; "Bjørnstad",
"Bjornstad", "Bjoernstad"; "Åsheim", "Aasheim"; "Hansen", "Hanssen"; "Kari-Anne" and
"Kari Anne"; foreign letters with or without their accents. Comparing raw strings makes each
of these a disagreement, so the probabilistic stage compares keys instead:

:func:`name_key`
    lowercase; æ → ae, ø → o (and the written form oe → o), å → aa; other diacritics stripped
    (ä → ae, ö → o as in Swedish/German spelling); the patronymic endings -sen, -ssen, -son,
    -sson → sen; hyphens become spaces; other punctuation dropped; spaces collapsed. Empty
    names become null.
:func:`name_tokens`
    the keys of each part of a double or hyphenated name, so "Hansen-Bakke" and "Bakke"
    share a token.
:func:`phonetic_key`
    a coarser key for blocking and for a "sounds alike" level: from :func:`name_key`, ae → e,
    aa → a, th → t, ph → f, c → k, z → s, w → v, y → i, x → ks, q → k, h after a consonant
    dropped, double letters made single ("Sæther" and "Sether" agree).

Everything is a whole-column expression (no Python per row); the same expressions are
applied to records and register so both sides fold identically.
"""

from __future__ import annotations

import polars as pl

__all__ = ["name_key", "name_tokens", "phonetic_key"]

# Letters folded before diacritics are stripped (NFD would split å into a + ring).
_LETTER_FOLDS: tuple[tuple[str, str], ...] = (
    ("æ", "ae"),
    ("ø", "o"),
    ("å", "aa"),
    ("ä", "ae"),
    ("ö", "o"),
    ("œ", "oe"),
    ("ß", "ss"),
    ("ð", "d"),
    ("þ", "th"),
    ("ł", "l"),
    ("đ", "d"),
    ("ı", "i"),
)
# Coarse, sound-based folds applied to a name_key (order matters: digraphs first).
_PHONETIC_FOLDS: tuple[tuple[str, str], ...] = (
    ("ae", "e"),
    ("aa", "a"),
    ("th", "t"),
    ("ph", "f"),
    ("ck", "k"),
    ("ch", "k"),
    ("c", "k"),
    ("q", "k"),
    ("z", "s"),
    ("w", "v"),
    ("y", "i"),
    ("x", "ks"),
)


def name_key(expr: pl.Expr) -> pl.Expr:
    """The normalised key of a name column (see the module docstring); null for null/empty.

    Two spellings of one Norwegian name get the same key: æ/ae, ø/o/oe, å/aa, -sen/-ssen/
    -son/-sson, "Anne-Marie"/"Anne Marie", accents on foreign names.
    """
    out = expr.cast(pl.String).str.to_lowercase()
    for src, dst in _LETTER_FOLDS:
        out = out.str.replace_all(src, dst, literal=True)
    out = out.str.normalize("NFKD").str.replace_all(r"\p{M}+", "")
    # hyphens and other separators split parts; other punctuation is dropped
    out = out.str.replace_all(r"[-‐‑‒–—_/,;:.\s]+", " ").str.replace_all(r"[^a-z ]+", "")
    out = out.str.replace_all(r" +", " ").str.strip_chars(" ")
    out = out.str.replace_all(r"oe+", "o")  # Bjoernstad -> bjornstad (ø written oe)
    # patronymic/-sen endings: Hanssen, Hansson, Hanson -> hansen (per part of the name)
    out = out.str.replace_all(r"([a-z])s+(?:en|on)\b", "${1}sen")
    return pl.when(out.str.len_chars() > 0).then(out).otherwise(None)


def name_tokens(expr: pl.Expr) -> pl.Expr:
    """A list of the keys of each part of a name (double and hyphenated names split).

    Null for a null name, so a missing name is never counted as overlapping.
    """
    return name_key(expr).str.split(" ")


def phonetic_key(expr: pl.Expr) -> pl.Expr:
    """A coarse sound-alike key built from :func:`name_key`, for blocking and a phonetic level.

    Keys of one name written with or without æ/e ("Sæther"/"Sether"), th/t, c/k, z/s, w/v,
    y/i, and doubled letters agree. Spaces are kept between parts.
    """
    out = name_key(expr)
    for src, dst in _PHONETIC_FOLDS:
        out = out.str.replace_all(src, dst, literal=True)
    # h after a consonant is silent in most Norwegian spellings (Thor/Tor, Bergh/Berg)
    out = out.str.replace_all(r"([bcdfgjklmnpqrstvxz])h", "${1}")
    for letter in "abcdefghijklmnopqrstuvwxyz":  # double letters (no backreferences in polars)
        out = out.str.replace_all(letter + "{2,}", letter)
    return out
