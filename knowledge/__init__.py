"""The knowledge base: registry, keyword index, vector store, retrieval."""
