"""Apache Airflow provider for Telnyx TeXML call recordings."""

from __future__ import annotations

__version__ = "0.2.0"

__all__ = ["__version__"]
