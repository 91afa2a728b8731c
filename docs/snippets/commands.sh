# Commands the docs show. tests/docs/test_docs_snippets.py runs the sandbox ones (on a free port instead of
# 8765) and parses the Airflow one with Airflow's own CLI parser against the example DAG's params.

# [START sandbox_cli]
python -m telnyx_provider.sandbox --port 8765     # or: telnyx-sandbox --port 8765
# prints its base URL, API key, account SID, callback public key and an `export AIRFLOW_CONN_TELNYX_DEFAULT=...` line
# [END sandbox_cli]

# [START sandbox_seed_history]
python -m telnyx_provider.sandbox --port 8765 --seed-history 7   # a week of recordings to archive
# [END sandbox_seed_history]

# [START trigger_example]
airflow dags trigger example_telnyx_call_recording \
    -c '{"call_sid": "v3:...", "destination": "s3://my-bucket/calls/"}'
# [END trigger_example]
