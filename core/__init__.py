"""Cross-cutting pieces: settings, errors, logging, the CLI, token counting."""
