"""Sub-commands of the ``pneumo`` command line, one module per area.

Each module defines ``add_commands(subparsers)``, which adds its parsers and sets
``handler`` to a function taking the parsed arguments and returning an exit code.
"""
