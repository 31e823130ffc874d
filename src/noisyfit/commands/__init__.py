"""Extra ``noisyfit`` subcommands, one module each (method families' own command lines).

A module here registers its command with the decorator from :mod:`noisyfit.cli`::

    from ..cli import command

    @command("selfie-cli", help="SELFIE's original command line")
    def selfie_cli(argv: list[str]) -> int: ...

``noisyfit`` imports every module of this package at start-up.
"""
