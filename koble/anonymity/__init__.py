"""anonymity"""
