"""The trusted third party's pseudonym engine (design.md §1.4, §2.3).

* :mod:`.keys` and :mod:`.keystore`: versioned keysets with a primary, encrypted at rest.
* :mod:`.scheme`: the keyed permutation (AES-256 on a canonical 16-byte block) over columns.
* :mod:`.pseudonymise`: validate, resolve identity changes (:mod:`.identity`), pseudonymise,
  account for every row.
* :mod:`.reverse`: authorised re-identification and re-keying.
* :mod:`.serials`: project serial numbers (løpenummer).
* :mod:`.hazmat`: the raw primitives underneath; not for use outside this package.
"""
