"""The ``slipstream`` command line (Typer): the one composition root of the engine.

May import every engine package, and the HTTP server (``webhooks``) when it serves agents.
"""
