"""`python -m minibuild` runs the command line."""

from minibuild.cli import main

main()
