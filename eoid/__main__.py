"""`python -m eoid ...` (what torchrun launches): the same as the `eoid` command."""

from eoid.cli import main

main()
