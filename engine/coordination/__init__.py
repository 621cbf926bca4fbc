"""Coordination of running deployments: parameters, barriers, the abort fence, wake-ups.

Imports ``engine.store`` and the base modules; never a web framework (the HTTP adapters
live in ``webhooks``).
"""
