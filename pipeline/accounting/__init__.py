"""Frame accounting: what became of every frame, and the keys it is kept under.

``keys``: every ledger key the runtime writes, built and parsed here, of a size checked
against the ledger's fixed key field (never truncated).
"""
