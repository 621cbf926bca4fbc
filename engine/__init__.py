"""The engine: recipes, compiler, Terraform runner, coordination, storage, service, CLI.

Packages, lowest first; each imports only those below it (``tests/test_layers.py`` checks):
``errors``, ``files``, ``canonical`` (base) ← ``recipes`` ← ``compile``; ``terraform``,
``store`` ← ``coordination``, ``access`` (users, tokens, rights); all of them ← ``runs`` ←
``inventory`` (clouds against the runs' states) ← ``service`` ← ``cli``. ``agent`` is the
stdlib-only file copied to machines and imports nothing of the project.
"""

__version__ = "0.1.0"
