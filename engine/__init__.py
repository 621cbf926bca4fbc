"""The engine: recipes, compiler, Terraform runner, coordination, storage, service, CLI."""

__version__ = "0.1.0"
