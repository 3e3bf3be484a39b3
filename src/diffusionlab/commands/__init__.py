"""CLI commands. Each module here defines `register(app)`; cli.py imports every module it finds."""
