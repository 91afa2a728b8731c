# The telnyx_default connection in its forms. tests/docs/test_docs_snippets.py reads each block between its
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

# [START connection_env_json_extra]
# Every extra, with its default where it has one (leave out what you do not change).
export AIRFLOW_CONN_TELNYX_DEFAULT='{
    "conn_type": "telnyx",
    "login": "YOUR_ACCOUNT_SID",
    "password": "YOUR_API_KEY",
    "extra": {
        "timeout": 30,
        "connect_timeout": 10,
        "max_retries": 8,
        "retry_max_wait": 30,
        "retry_budget": 60,
        "pool_size": 10,
        "adoption_wait": 5,
        "shared_polls": true,
        "receiver_url": "http://airflow-api:8080/telnyx",
        "public_key": "YOUR_ED25519_PUBLIC_KEY_BASE64"
    }
}'
# [END connection_env_json_extra]

# [START connection_env_uri_extra_text]
# Text extras (and shared_polls=true/false) as query parameters, URL-encoded.
export AIRFLOW_CONN_TELNYX_DEFAULT='telnyx://YOUR_ACCOUNT_SID:YOUR_API_KEY@api.telnyx.com/https?shared_polls=false&receiver_url=http%3A%2F%2Fairflow-api%3A8080%2Ftelnyx&public_key=YOUR_ED25519_PUBLIC_KEY_BASE64'
# [END connection_env_uri_extra_text]

# [START connection_env_uri_extra_json]
# Numbers through __extra__, the whole extra as URL-encoded JSON ({"adoption_wait": 10, "max_retries": 3}).
export AIRFLOW_CONN_TELNYX_DEFAULT='telnyx://YOUR_ACCOUNT_SID:YOUR_API_KEY@api.telnyx.com/https?__extra__=%7B%22adoption_wait%22%3A%2010%2C%20%22max_retries%22%3A%203%7D'
# [END connection_env_uri_extra_json]

# [START connection_cli]
airflow connections add telnyx_default \
    --conn-type telnyx \
    --conn-login YOUR_ACCOUNT_SID \
    --conn-password YOUR_API_KEY
# [END connection_cli]

# [START connection_cli_extra]
airflow connections add telnyx_prod \
    --conn-type telnyx \
    --conn-login YOUR_ACCOUNT_SID \
    --conn-password YOUR_API_KEY \
    --conn-extra '{"adoption_wait": 10, "public_key": "YOUR_ED25519_PUBLIC_KEY_BASE64"}'
# [END connection_cli_extra]
