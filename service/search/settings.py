"""Settings of the window index (`ACTSERVE_INDEX_DIR`, ...): the `search` group."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field

from window_index.store import ANN_MIN_ROWS


def default_index_dir() -> Path:
    """$XDG_DATA_HOME/actserve/index (~/.local/share/actserve/index)."""
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "actserve" / "index"


class SearchSettings(BaseModel):
    #: Flat environment names: ACTSERVE_INDEX_DIR rather than ACTSERVE_DIR.
    flat_names: ClassVar[dict[str, str]] = {
        "dir": "index_dir",
        "ann_min_rows": "index_ann_min_rows",
        "jobs": "index_jobs",
        "max_top_k": "search_max_top_k",
    }

    dir: Path = Field(
        default_factory=default_index_dir,
        description="Where the window index lives (a LanceDB database, one table per model "
        "version); created on first use. Default: $XDG_DATA_HOME/actserve/index.",
    )
    ann_min_rows: int = Field(
        ANN_MIN_ROWS,
        ge=1,
        description="Windows of one model version from which the index builds an approximate "
        "(IVF) index after a write; below it, searches scan every window exactly.",
    )
    jobs: bool = Field(
        False,
        description="Jobs also write the windows of the videos they run into the index "
        "(`service.search.index_windows`).",
    )
    max_top_k: int = Field(1000, ge=1, description="Largest top_k a search may ask for.")
