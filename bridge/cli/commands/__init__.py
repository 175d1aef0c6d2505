"""One module per `ami-bridge` command, each with `run(args, env) -> int` (the exit status).

cli.py imports a command's module only when that command runs, so the external data source's
cache-hit call loads only what it uses.
"""
