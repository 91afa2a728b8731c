# The telnyx_default connection in its three forms. tests/docs/test_snippets.py reads each block between its
# markers and checks the connection it makes (the docs include the blocks, so they cannot rot).

# [START connection_env_json]
export AIRFLOW_CONN_TELNYX_DEFAULT='{
    "conn_type": "telnyx",
    "login": "YOUR_ACCOUNT_SID",
    "password": "YOUR_API_KEY",
    "host": "https://api.telnyx.com/v2",
    "extra": {"timeout": 30, "max_retries": 8, "retry_budget": 60}
}'
# [END connection_env_json]

# [START connection_env_uri]
# The sandbox on 127.0.0.1:8765 over plain HTTP: in a connection URI the path is the schema.
export AIRFLOW_CONN_TELNYX_DEFAULT='telnyx://YOUR_ACCOUNT_SID:YOUR_API_KEY@127.0.0.1:8765/http'
# [END connection_env_uri]

# [START connection_cli]
airflow connections add telnyx_default \
    --conn-type telnyx \
    --conn-login YOUR_ACCOUNT_SID \
    --conn-password YOUR_API_KEY
# [END connection_cli]
