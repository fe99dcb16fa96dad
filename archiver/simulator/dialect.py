"""The simulator's dialects: the shapes a real ccall server (or a white-labelled one) may answer in.

The vendor documents the API in prose and images; servers in the wild differ. Each switch
turns on one variant the client must read; ``archiver simulate --dialect NAME=VALUE`` and the
tests use them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

EMPTY_SHAPES: dict[str, Any] = {"list": [], "null": None, "false": False, "object": {}}


@dataclass
class Dialect:
    """How the simulated API shapes its answers (the defaults are the wire as documented)."""

    link_field: str = "recording_file"  # or "recording", as the vendor's prose calls it
    bare_rows: bool = False  # rows without their {"Cdr": ...} wrapper
    empty: str = "list"  # an empty window's response: list ([]), null, false or object ({})
    paging_strings: bool = False  # paging numbers and booleans sent as strings ("17", "true")
    ignore_page: bool = False  # every request answers with every row and next_page true
    no_next_page: bool = False  # paging without next_page and page_count: read until a page is empty
    json_auth: bool = False  # bad credentials: 200 with an error object in Vietnamese, not HTTP 401
    volatile: bool = False  # mos, pdd and cid_name change from one read of a call to the next

    @classmethod
    def parse(cls, items: list[str]) -> Dialect:
        """``["link_field=recording", "bare_rows=1", …]`` as a Dialect; ValueError names a bad item."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for item in items:
            name, sep, value = item.partition("=")
            if not sep or name not in known:
                raise ValueError(f"unknown dialect switch {item!r}; known: {', '.join(sorted(known))}")
            if known[name].type == "bool":
                values[name] = value.strip().lower() in ("1", "true", "yes", "on")
            else:
                values[name] = value.strip()
        dialect = cls(**values)
        if dialect.link_field not in ("recording_file", "recording"):
            raise ValueError("link_field is recording_file or recording")
        if dialect.empty not in EMPTY_SHAPES:
            raise ValueError(f"empty is one of {', '.join(EMPTY_SHAPES)}")
        return dialect

    def row(self, cdr: dict[str, Any], read: int) -> Any:
        """One row as this dialect sends it; *read* numbers the requests (for volatile fields)."""
        fields_ = dict(cdr["Cdr"])
        if self.link_field != "recording_file":
            fields_[self.link_field] = fields_.pop("recording_file")
        if self.volatile:
            fields_["mos"] = f"{3 + (read % 20) / 10:.1f}"
            fields_["pdd"] = f"{(read % 7) / 10:.2f}s"
            fields_["cid_name"] = f"{fields_.get('cid_name') or ''} ({read})"
        return fields_ if self.bare_rows else {"Cdr": fields_}

    def paging(self, values: dict[str, Any]) -> dict[str, Any]:
        """The paging object as this dialect sends it."""
        out = {k: v for k, v in values.items() if not (self.no_next_page and k in ("next_page", "page_count"))}
        if self.paging_strings:
            out = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in out.items()}
        return out

    def empty_response(self) -> Any:
        return EMPTY_SHAPES[self.empty]
