"""`python -m segdemo.worker`: a fine-tune worker (see `segdemo.worker.__main__`)."""
