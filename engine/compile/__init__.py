"""Compiling: a valid deployment to one Terraform JSON root per cloud, and the run spec.

Pure functions, no I/O. Imports ``engine.recipes``, ``providers_map`` and the base modules.
"""
