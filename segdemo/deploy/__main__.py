"""python -m segdemo.deploy: see segdemo/deploy/space.py."""

from segdemo.deploy.space import main

main()
