"""Keeping card numbers out of a recording (PCI DSS): pause before the card is read out, resume after.

The guide includes this DAG; tests/docs/test_snippets.py runs it with ``dag.test()`` on the sandbox.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

# [START howto_pci_pause_resume]
from telnyx_provider.operators.recording import (
    PauseCallRecordingOperator,
    ResumeCallRecordingOperator,
    StartCallRecordingOperator,
)

# [END howto_pci_pause_resume]


@dag(
    dag_id="docs_pci_pause_resume",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={"call_sid": Param("", type="string", description="The live call to record (v3:...).")},
    tags=["telnyx", "docs"],
)
def docs_pci_pause_resume() -> None:
    @task
    def take_card_payment() -> str:
        """Stands for the IVR step that collects the card (yours)."""
        return "paid"

    # [START howto_pci_pause_resume_tasks]
    start = StartCallRecordingOperator(task_id="start_recording", call_sid="{{ params.call_sid }}")
    ids = {
        "call_sid": "{{ params.call_sid }}",
        "recording_sid": "{{ ti.xcom_pull(task_ids='start_recording')['sid'] }}",
    }
    pause = PauseCallRecordingOperator(task_id="pause_for_card", **ids)
    resume = ResumeCallRecordingOperator(task_id="resume_after_card", trigger_rule="all_done", **ids)

    start >> pause >> take_card_payment() >> resume  # the card is read while nothing is recorded
    # [END howto_pci_pause_resume_tasks]


docs_pci_pause_resume()
