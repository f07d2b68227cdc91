"""`python -m simulators`: the same as `rpm-sim`."""

from simulators.cli import main

main()
