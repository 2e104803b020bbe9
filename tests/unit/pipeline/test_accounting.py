"""Every raw lead row is accounted for from the export to the scored table."""

from __future__ import annotations

import pytest

from pipeline.errors import DataError
from pipeline.stages.score import end_to_end

COUNTS = {"input": 100, "scored": 40, "not_open": 58, "rejected": 2,
          "not_open_by_reason": {"converted": 50, "lost": 8}}


def test_raw_rows_are_ingest_losses_plus_the_batch() -> None:
    quality = {"leads": {"rows_clean": 100, "rows_rejected": 5, "duplicates_dropped": 3}}
    out = end_to_end(quality, COUNTS)
    assert out["raw_rows"] == 108
    assert (out["duplicates_dropped"], out["rejected_at_ingest"], out["scored"],
            out["not_open"], out["rejected_at_scoring"]) == (3, 5, 40, 58, 2)
    assert out["not_open_by_reason"] == {"converted": 50, "lost": 8}


def test_a_batch_without_ingest_counts_its_own_input() -> None:
    out = end_to_end(None, COUNTS)
    assert out["raw_rows"] == 100 and out["rejected_at_ingest"] == 0


def test_interim_leads_that_ingest_did_not_report_stop_the_batch() -> None:
    quality = {"leads": {"rows_clean": 90, "rows_rejected": 5}}
    with pytest.raises(DataError, match="interim leads hold 100 rows but ingest reported 90"):
        end_to_end(quality, COUNTS)
