"""python -m segdemo.card: see segdemo/card/cli.py."""

from segdemo.card.cli import main

main()
