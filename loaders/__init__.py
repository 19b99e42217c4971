"""Document loaders and ingestion for the knowledge base.

Parsers by mimetype, splitting, indexing. Transport-agnostic: nothing here imports FastAPI.
"""
