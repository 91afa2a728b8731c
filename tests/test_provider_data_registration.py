"""Provider info for issue 10: the extra link and the transfer module are registered and importable."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from telnyx_provider.get_provider_info import get_provider_info


def test_provider_info_validates_against_airflows_schema():
    import airflow
    import jsonschema

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_extra_link_and_transfer_are_registered_and_importable():
    info = get_provider_info()
    assert info["extra-links"] == ["telnyx_provider.links.TelnyxRecordingLink"]
    (transfer,) = info["transfers"]
    module = importlib.import_module(transfer["python-module"])
    assert hasattr(module, "RecordingToStorageOperator")
    module_name, _, class_name = info["extra-links"][0].rpartition(".")
    assert getattr(importlib.import_module(module_name), class_name).name == "Telnyx recording"


def test_providers_manager_lists_the_extra_link():
    from airflow.providers_manager import ProvidersManager

    assert "telnyx_provider.links.TelnyxRecordingLink" in ProvidersManager().extra_links_class_names
