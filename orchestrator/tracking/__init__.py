"""MLflow tracking from the driver: one parent run per sweep, one child run per trial.

Trials never write to MLflow themselves: they report to Ray Tune, and a Tune callback,
running in the driver, is the store's only writer (several processes writing one SQLite
file hit "database is locked"). Runs are found again by tags, so a resumed sweep keeps
logging into the parent and child runs it started.

One module per concern; import each name from its module (this package re-exports
nothing):

- `keys`: the tag keys and metric prefixes runs are written with, and how a Tune
  result splits into metrics and tags.
- `store`: the tracking URI, where artifacts live beside it, the experiment.
- `source`: MLflow's own source tags (entry script, user, git commit and state).
- `writer`: the one retry policy (`with_retries`) and the one writer thread (`MLflowWriter`).
- `runs`: a sweep's parent run and its child runs (`SweepTracker`).
- `dataset_inputs`: the datasets a trial read, as the child run's inputs.
- `checkpoints`: a reported checkpoint as a URI a user can open, and its file.
- `logged_model`: a trial's final backbone as an MLflow model.
- `callback`: the Tune callback that mirrors every trial into its child run.
- `interrupt`: marking an interrupted sweep's runs KILLED.

Imports among them point one way (tests/test_imports.py):
keys <- store, source <- runs; writer <- runs, callback, interrupt;
runs, dataset_inputs, checkpoints, logged_model <- callback; runs <- interrupt.
"""
