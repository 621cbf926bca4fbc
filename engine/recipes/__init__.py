"""The recipe language: YAML with locations, the JSON Schema, checks, and valid frozen types.

Owns components, deployments, inputs, deploy-time overrides and the clouds configuration
(``clouds.yaml``, parsed with the same located-error machinery). Imports the engine's base
modules and ``providers_map`` (cloud types, their override schemas and image catalog) only.
"""
