"""Authentication: JWTs from ai-helper-back, and the playground cookie."""
