"""Sphinx configuration of the airflow-provider-telnyx documentation (``make docs``).

The build needs no network: the one intersphinx inventory (Python's standard library) ships in
``_inventories/`` (taken from Debian's ``python3.11-doc``), diagrams are drawn by the local Graphviz ``dot``,
and the theme comes from the ``docs`` extra. ``make docs`` builds with ``-W --keep-going -n``: every warning
is an error and every cross-reference must resolve.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(REPO / "provider"))
# autodoc imports Airflow, which reads (and would create) its home: keep it out of the user's.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="telnyx-docs-airflow-home-"))

from telnyx_provider import __version__  # noqa: E402

project = "airflow-provider-telnyx"
author = "airflow-provider-telnyx developers"
copyright = "airflow-provider-telnyx developers"
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.graphviz",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
    "sphinx_autodoc_typehints",
    "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
nitpicky = True

# MyST: the pages are Markdown (the README's own syntax), with Sphinx directives in fences.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# No network at build time: Python's inventory is shipped; Airflow, requests, aiohttp and the other
# third-party libraries publish none we could ship, so their types are listed in nitpick_ignore below.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3.11", str(DOCS / "_inventories" / "python-3.11.inv")),
}

autodoc_default_options = {"members": True, "show-inheritance": True, "member-order": "bysource"}
# sphinx-autodoc-typehints puts the types into the descriptions; it also runs the modules' TYPE_CHECKING
# imports, so names imported for annotations only resolve.
typehints_fully_qualified = False
always_document_param_types = False
typehints_document_rtype = True
typehints_defaults = "comma"
autodoc_class_signature = "separated"
autodoc_inherit_docstrings = False
napoleon_google_docstring = False
napoleon_numpy_docstring = False

graphviz_output_format = "svg"
graphviz_dot_args = ["-Gfontname=DejaVu Sans", "-Nfontname=DejaVu Sans", "-Efontname=DejaVu Sans"]

html_theme = "furo"
html_title = f"airflow-provider-telnyx {release}"
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"
html_show_sourcelink = False

# Third-party types that appear in signatures and bases, whose documentation has no inventory we can
# ship (Airflow's, requests', aiohttp's, pendulum's, fsspec's). Each is listed: nothing else may be
# left unresolved.
nitpick_ignore = [
    *(
        ("py:class", name)
        for name in (
            "aiohttp.client_exceptions.ClientError",
            "sqlalchemy.engine.base.Engine",
            "aiohttp.client_reqrep.ClientResponse",
            "airflow._shared.plugins_manager.plugins_manager.AirflowPlugin",
            "airflow.sdk.bases.sensor.PokeReturnValue",
            "airflow.sdk.definitions.mappedoperator.OperatorPartial",
            "airflow.sdk.exceptions.AirflowException",
            "airflow.sdk.exceptions.AirflowFailException",
            "airflow.sdk.io.path.ObjectStoragePath",
            "airflow.sdk.bases.hook.BaseHook",
            "airflow.sdk.bases.operator.BaseOperator",
            "airflow.sdk.bases.operatorlink.BaseOperatorLink",
            "airflow.sdk.bases.sensor.BaseSensorOperator",
            "airflow.sdk.definitions.asset.Asset",
            "airflow.sdk.definitions.asset.AssetWatcher",
            "airflow.triggers.base.BaseEventTrigger",
            "airflow.triggers.base.BaseTrigger",
            "airflow.triggers.base.TriggerEvent",
            "fastapi.applications.FastAPI",
            "requests.models.Response",
            "requests.sessions.Session",
        )
    ),
    ("py:meth", "AssetManager.register_asset_change"),
]

# sphinx-autodoc-typehints reads the annotations of what our modules import, too: tenacity's Retrying
# (a forward reference tenacity never defines at run time) and an Airflow module whose TYPE_CHECKING import
# names a module Airflow 3.3 no longer has. Neither is ours to fix.
suppress_warnings = ["sphinx_autodoc_typehints.forward_reference", "sphinx_autodoc_typehints.guarded_import"]

# sphinx-autodoc-typehints 3.6 (the last for Python 3.11) calls an API Sphinx 10 removes; not our concern.
warnings.filterwarnings("ignore", message=r".*sphinx_autodoc_typehints.*is deprecated")
