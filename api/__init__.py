"""The REST API: one router per resource under ``api/routes``, combined in ``api.router``."""
