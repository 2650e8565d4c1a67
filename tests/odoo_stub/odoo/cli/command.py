"""Dispatch to a subcommand module.

A command is a module `odoo.cli.<name>` with a `run(args)` function returning
the exit code; add one by adding the module and its name to COMMANDS.
"""

import importlib
import sys

COMMANDS = {
    "server": "odoo.cli.server",
    "neutralize": "odoo.cli.neutralize",
    "shell": "odoo.cli.shell",
    "db": "odoo.cli.db",
}
# Commands of real Odoo that this stand-in does not provide (yet).
UNSUPPORTED = ("cloc", "deploy", "genproxytoken", "help", "obfuscate",
               "populate", "scaffold", "start", "tsconfig", "upgrade_code")


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    name = "server"
    if args and not args[0].startswith("-"):
        name = args.pop(0)
    if name not in COMMANDS:
        known = "known to Odoo but " if name in UNSUPPORTED else "unknown, "
        sys.stderr.write(f"odoo-bin {name}: {known}not supported by this stand-in\n")
        sys.exit(2)
    command = importlib.import_module(COMMANDS[name])
    sys.exit(command.run(args))
