"""Test helpers shared by the suites: a live uvicorn server and the service under test."""
