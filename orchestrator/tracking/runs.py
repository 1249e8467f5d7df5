"""A sweep's runs in MLflow: its parent run, found again by its sweep folder on resume,
and one child run per trial, found again by the trial's id."""
from __future__ import annotations

from typing import Any

from mlflow.entities import DatasetInput, Param, RunTag
from mlflow.tracking import MlflowClient

from orchestrator.tracking.keys import TAG_PARENT, TAG_SWEEP, TAG_SWEEP_DIR, TAG_TRIAL_ID
from orchestrator.tracking.source import git_commit, source_tags
from orchestrator.tracking.store import ensure_experiment
from orchestrator.tracking.writer import use_one_retry_policy


class SweepTracker:
    """The parent run of one sweep, found again by its sweep folder on resume."""

    def __init__(self, tracking_uri: str, experiment: str, sweep_name: str, sweep_dir: str,
                 script: str | None = None):
        self.tracking_uri = tracking_uri
        use_one_retry_policy()
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.sweep_name = sweep_name
        self.sweep_dir = sweep_dir
        self.source_tags = source_tags(script)
        self.experiment_id = ensure_experiment(self.client, experiment, tracking_uri)
        self.parent_run_id = self._find_or_create_parent()

    def _search(self, filter_string: str, max_results: int = 10):
        return self.client.search_runs(
            [self.experiment_id], filter_string=filter_string, max_results=max_results,
            order_by=["attributes.start_time ASC"],
        )

    def _find_or_create_parent(self) -> str:
        runs = [
            r for r in self._search(f"tags.`{TAG_SWEEP_DIR}` = '{self.sweep_dir}'")
            if TAG_PARENT not in r.data.tags
        ]
        if runs:
            run_id = runs[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=self.sweep_name,
            tags={TAG_SWEEP: self.sweep_name, TAG_SWEEP_DIR: self.sweep_dir,
                  "git_commit": git_commit(), **self.source_tags},
        )
        return run.info.run_id

    def log_sweep(self, params: dict[str, Any], tags: dict[str, str]) -> None:
        self.client.log_batch(
            self.parent_run_id,
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )

    def children(self):
        """The sweep's child runs, oldest first."""
        return self._search(f"tags.`{TAG_PARENT}` = '{self.parent_run_id}'", max_results=10000)

    def find_child(self, trial_id: str) -> str | None:
        runs = self._search(
            f"tags.`{TAG_PARENT}` = '{self.parent_run_id}' and tags.`{TAG_TRIAL_ID}` = '{trial_id}'"
        )
        return runs[0].info.run_id if runs else None

    def child_run(self, trial_id: str, trial_name: str, params: dict[str, Any],
                  tags: dict[str, str], inputs: list[DatasetInput] = ()) -> str:
        """The child run of a trial: found by its trial id, or created with its params and datasets."""
        found = self.find_child(trial_id)
        if found:
            return found
        run = self.client.create_run(
            self.experiment_id,
            run_name=trial_name,
            tags={TAG_PARENT: self.parent_run_id, TAG_TRIAL_ID: trial_id,
                  TAG_SWEEP: self.sweep_name, **self.source_tags, **tags},
        )
        self.client.log_batch(
            run.info.run_id, params=[Param(k, str(v)) for k, v in sorted(params.items())]
        )
        if inputs:
            self.client.log_inputs(run.info.run_id, datasets=list(inputs))
        return run.info.run_id

    def mark_killed(self) -> list[str]:
        """An interrupted sweep: the parent and every child still RUNNING become KILLED."""
        killed = [r.info.run_id for r in self.children() if r.info.status == "RUNNING"]
        for run_id in killed:
            self.client.set_terminated(run_id, status="KILLED")
        self.client.set_terminated(self.parent_run_id, status="KILLED")
        return killed

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.parent_run_id, status=status)
