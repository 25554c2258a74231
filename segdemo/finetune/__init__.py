"""Fine-tuning a model on a few image/mask pairs, in one module per concern: `options` (what a job is asked) and
`events` (what it tells), `recipe` (the training), `probe` (a new head's start), `scoring` (the base's
"before"), and the command `python -m segdemo.finetune` (`__main__`)."""
