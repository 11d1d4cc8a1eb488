"""pseudonym"""
