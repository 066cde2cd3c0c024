"""CLI command groups, one module each; every module exposes ``register(app: typer.Typer)``.

Modules are discovered, so a feature adds its commands without editing ``flows/cli.py``.
"""
