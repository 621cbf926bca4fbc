"""A run's life: creating, driving through the state machine, terminating; run locks and the
``local`` cloud's launcher.

Imports ``recipes``, ``compile``, ``terraform``, ``store``, ``coordination`` and the base.
"""
