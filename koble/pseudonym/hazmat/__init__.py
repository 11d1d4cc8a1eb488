"""Hazardous materials: raw cryptographic primitives for koble's own use.

!!! This layer has no safety rails. Its functions take raw key bytes, perform no validation
beyond lengths, and will happily encrypt with ECB mode (which is correct only for the
single-block keyed permutation koble uses for pseudonyms). Use :mod:`koble.pseudonym`
instead; nothing outside ``koble.pseudonym`` should import this package.
"""
