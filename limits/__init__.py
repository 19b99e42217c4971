"""Per-organization (and per-user) limits: reserve the worst case, then settle to the real use.

``counters`` keeps the window counters (Redis, shared by every instance, or in-process),
``enforcer`` turns a call into the checks of the limits that apply and answers 429 naming
the limit that would be exceeded.
"""
