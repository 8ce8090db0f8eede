"""The link a sweep prints opens MLflow 3.17's runs table with the sweep's columns, not its
GenAI overview: the experiment is tagged as model training and carries a saved view (columns,
order, widths) that the link names. Read from MLflow 3.17.2's UI bundle; no MLflow import."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from sweeps.tracking_uri import public_uri

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
# The ExperimentKind values the UI's getWorkflowTypeForExperimentKind maps to "Model training";
# a user's own choice among them is kept.
MODEL_TRAINING_KINDS = frozenset(
    {
        MODEL_TRAINING,
        "custom_model_development_inferred",
        "finetuning",
        "forecasting",
        "classification",
        "regression",
        "automl",
    }
)

# useSharedExperimentViewState reads the view named by the URL's viewStateShareKey from the
# experiment tag EXPERIMENT_PAGE_VIEW_STATE_SHARE_TAG_PREFIX + key; the same tags fill the
# page's "Views" menu (listSavedViews), where this one shows as VIEW_NAME.
VIEW_KEY = "cnnsweep-runs"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
VIEW_NAME = "Sweep trials"

# Column ids are the UI's canonical sort keys (makeCanonicalSortKey: type.`name`), widths in
# CSS px. A fresh browser profile on a loopback host gets the Assistant panel (25% of the
# window) opened once (AssistantFloatingButton), leaving the grid 863 px of a 1500 px window:
# 73 (checkbox) + these + Created = 853, room for a vertical scrollbar.
RUN_NAME = "attributes.`Run Name`"
RUNS_COLUMNS = {
    RUN_NAME: 175,  # child runs are indented under their parent; hover shows a cut name
    "params.`model`": 110,  # "mobilenet_v2" whole (11 px padding each side)
    "params.`optimizer`": 80,
    "params.`lr`": 70,
    "metrics.`val_acc`": 70,
    "metrics.`test_acc`": 70,
    "tags.`stop_reason`": 125,  # "ASHA at epoch 2 of 10" is cut short; hover shows it all
}
# Always shown, never in selectedColumns: Created is pinned left beside Run Name (narrowed);
# Duration goes last, the one column left past the right edge when the panel is open.
CREATED, DURATION = "runDateAndNestInfo", "duration"
CREATED_WIDTH = 80  # its run-status icon and the start of "5 minutes ago"


def view_state() -> dict:
    """The runs-table state the link applies: only the sweep's columns (so MLflow's default
    Dataset/Source/Models columns are hidden), in reading order, at widths that fit."""
    toggled = [c for c in RUNS_COLUMNS if c != RUN_NAME]  # Run Name is always shown
    return {
        "selectedColumns": toggled,
        "columnOrder": [RUN_NAME, CREATED, *toggled, DURATION],
        "columnWidths": {**RUNS_COLUMNS, CREATED: CREATED_WIDTH},
    }


def _stored_view(value: str | None) -> tuple[dict | None, int | None]:
    """The state and createdAt of a saved-view tag (decodeSavedViewEnvelope's JSON envelope
    around a JSON ``state``); ``(None, None)`` when absent or not in that shape."""
    try:
        envelope = json.loads(value or "")
        return json.loads(envelope["state"]), int(envelope["createdAt"])
    except (ValueError, TypeError, KeyError):
        return None, None


def mark_experiment(client: MlflowClient, experiment_id: str) -> None:
    """Tag the experiment as model training and store the sweep's runs-table view; writes
    only what differs, so every sweep start may call it (a changed layout replaces the old)."""
    tags = client.get_experiment(experiment_id).tags
    # MLflow 3.17.2 itself opens by the URL's workflowType (shouldEnableWorkflowBasedNavigation
    # makes useExperimentKind ignore this tag); newer UIs sync the sidebar to it.
    if tags.get(KIND_TAG) not in MODEL_TRAINING_KINDS:
        client.set_experiment_tag(experiment_id, KIND_TAG, MODEL_TRAINING)
    state, created = _stored_view(tags.get(VIEW_TAG))
    if state == view_state():
        return
    now = int(time.time() * 1000)
    envelope = {"name": VIEW_NAME, "createdAt": created or now, "updatedAt": now}
    # deserializePersistedState takes a plain JSON ``state`` as well as a "deflate;" one.
    envelope["state"] = json.dumps(view_state())
    client.set_experiment_tag(experiment_id, VIEW_TAG, json.dumps(envelope))


def experiment_url(tracking_uri: str, experiment_id: str) -> str:
    """The experiment's runs table in the "Model training" sidebar with the sweep's columns,
    for a browser that has never opened MLflow (no credentials in it)."""
    # /runs: the bare route goes through useNavigateToExperimentPageTab (GenAI overview by
    # default) and, tried in 3.17.2, shows the table without applying the shared view.
    # workflowType: WorkflowTypeProvider's getWorkflowTypeFromUrl beats localStorage's
    # "genai" default. viewStateShareKey: the tag mark_experiment wrote.
    query = urlencode({"workflowType": "machine_learning", "viewStateShareKey": VIEW_KEY})
    return f"{public_uri(tracking_uri).rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"
