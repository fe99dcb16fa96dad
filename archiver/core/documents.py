"""The archive's own JSON documents, read back. Pure."""

from __future__ import annotations

import json
from typing import Any


def parse_document(raw: bytes, schema: str) -> dict[str, Any]:
    """*raw* as a JSON object whose ``schema`` is *schema*; ValueError saying what it is not."""
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ValueError("not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("schema") != schema:
        raise ValueError(f"not a {schema} document")
    return doc
