"""Use cases behind the routes.

Each service takes plain inputs and the caller's Principal, and knows nothing of HTTP
beyond raising ApiError.
"""
