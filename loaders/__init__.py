"""Document loaders and ingestion for the knowledge base (parsers by mimetype, splitting,
indexing). Transport-agnostic: nothing here imports FastAPI."""
