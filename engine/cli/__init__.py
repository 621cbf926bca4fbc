"""The ``slipstream`` command line (Typer): the one composition root of the engine.

May import every engine package, and the HTTP server (``webhooks``) when it serves agents.
``app`` gathers the commands, which live by group: ``recipes`` (validate, compile, schema),
``runs`` (deploy, resume, destroy), ``inspection`` (status, list, params, logs); ``options``
and ``output`` hold what they share, ``progress`` the live table. At import these modules
load Typer and the standard library only; a command imports the engine packages it uses,
so ``slipstream --help`` and ``slipstream list`` start in a fraction of a second.
"""
