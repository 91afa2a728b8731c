"""Airflow plugins of the Telnyx provider (named in provider info and the ``airflow.plugins`` entry point)."""
