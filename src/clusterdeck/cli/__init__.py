"""The command line: typer commands over :mod:`clusterdeck.api`, rich output, exit codes.

The only layer that prints, prompts or exits; an optional extra (``clusterdeck[cli]``) so the
library can be used without typer and rich.
"""
