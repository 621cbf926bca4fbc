"""The one owner of the Terraform binary: finding it, argv builders, the runner, its events.

A leaf: imports only the engine's base modules (``errors``, ``files``).
"""
