"""Retrieval-augmented answers over the org's knowledge base, with thread memory."""
