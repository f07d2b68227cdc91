"""`python -m rpm.cli`: the `rpm` command, where its script is not on PATH."""

from rpm.cli import main

main()
