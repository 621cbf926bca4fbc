"""The HTTP server: the app factory, the agent (coordination) API and, as they come, the
REST API, Git webhooks and the Slack endpoint.

Imports the engine's packages (never ``engine.cli``, which wires this server in).
"""
