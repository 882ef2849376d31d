"""Extra subcommands of the ``hlae`` command line.

Each module here defines ``register(subparsers)``, which adds its subcommand(s) with
``set_defaults(func=...)``; :mod:`hlae.cli` calls every one of them.
"""
