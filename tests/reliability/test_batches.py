"""One batch per (source, as_of, input content): a rerun, a renamed copy of the same file or
another model at the same as_of replaces the batch instead of adding a second one; an empty
batch never replaces one with rows without `allow_empty`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline import scoring_io
from pipeline.cli import app
from pipeline.errors import DataError
from tests.unit.pipeline.test_score import AS_OF_1, env, run, world  # noqa: F401 - fixtures

AS_OF = pd.Timestamp("2025-10-01")


def batch(batch_id: str, n: int, as_of: pd.Timestamp = AS_OF) -> pd.DataFrame:
    return pd.DataFrame({"lead_id": [f"L{i}" for i in range(n)],
                         "as_of": pd.Series([as_of] * n, dtype="datetime64[us]"),
                         "propensity": [0.5] * n, "batch_id": [batch_id] * n})


@pytest.fixture()
def engine(tmp_path: Path):
    with scoring_io.engine_for(scoring_io.SqlTarget(f"sqlite:///{tmp_path}/s.db")) as eng:
        yield eng


def counts(engine) -> dict[str, int]:
    return scoring_io.read_batches(engine, "scored_leads").groupby("batch_id").size().to_dict()


def test_same_key_replaces_another_batch_id(engine) -> None:
    """Another model (so another batch_id) on the same input and as_of replaces the batch."""
    key = scoring_io.BatchKey("synthetic", AS_OF, "abc-def")
    scoring_io.append_batch(engine, "scored_leads", batch("v1", 4), "v1", key)
    scoring_io.append_batch(engine, "scored_leads", batch("v2", 4), "v2", key)
    assert counts(engine) == {"v2": 4}
    batches = scoring_io.read_batches(engine, "scored_leads_batches")
    assert batches[["batch_id", "source", "input_hash", "n_rows"]].to_dict("records") == [
        {"batch_id": "v2", "source": "synthetic", "input_hash": "abc-def", "n_rows": 4}]


def test_other_keys_are_kept(engine) -> None:
    scoring_io.append_batch(engine, "scored_leads", batch("a", 2), "a",
                            scoring_io.BatchKey("synthetic", AS_OF, "h1"))
    scoring_io.append_batch(engine, "scored_leads", batch("b", 3), "b",
                            scoring_io.BatchKey("synthetic", AS_OF, "h2"))      # other input
    later = AS_OF + pd.Timedelta(days=7)
    scoring_io.append_batch(engine, "scored_leads", batch("c", 1, later), "c",
                            scoring_io.BatchKey("synthetic", later, "h1"))      # other as_of
    scoring_io.append_batch(engine, "scored_leads", batch("d", 1), "d",
                            scoring_io.BatchKey("crm", AS_OF, "h1"))            # other source
    assert counts(engine) == {"a": 2, "b": 3, "c": 1, "d": 1}


def test_an_empty_batch_does_not_replace_rows_in_sql(engine) -> None:
    key = scoring_io.BatchKey("synthetic", AS_OF, "h")
    scoring_io.append_batch(engine, "scored_leads", batch("v1", 3), "v1", key)
    with pytest.raises(DataError, match=r"no open leads.*replace the 3 rows.*--allow-empty"):
        scoring_io.append_batch(engine, "scored_leads", batch("v2", 0), "v2", key)
    assert counts(engine) == {"v1": 3}
    scoring_io.append_batch(engine, "scored_leads", batch("v2", 0), "v2", key, allow_empty=True)
    assert counts(engine) == {}


def test_an_empty_batch_does_not_replace_the_files(tmp_path: Path) -> None:
    paths = scoring_io.output_paths(tmp_path / "scored")
    empty = batch("x", 0).iloc[:, :1]
    scoring_io.write_batch_files(paths, batch("v1", 5), empty, empty, batch_id="v1")
    with pytest.raises(DataError, match=r"batch v2 has no open leads.*5 scored leads in "
                                        r".*scored\.parquet.*--allow-empty") as err:
        scoring_io.write_batch_files(paths, batch("v2", 0), empty, empty, batch_id="v2")
    assert err.value.n_rows == 0
    assert len(pd.read_parquet(paths.parquet)) == 5
    scoring_io.write_batch_files(paths, batch("v2", 0), empty, empty, batch_id="v2",
                                 allow_empty=True)
    assert len(pd.read_parquet(paths.parquet)) == 0


def test_score_has_an_allow_empty_flag() -> None:
    result = CliRunner().invoke(app, ["score", "--help"])
    assert result.exit_code == 0 and "--allow-empty" in result.output


# ------------------------------------------------------------------ through the stage


def test_a_renamed_copy_replaces_its_batch(env, tmp_path: Path) -> None:  # noqa: F811
    """The same export under another name, scored as of the same day: one batch, not two
    (the 3,776-rows-for-1,888-leads bug)."""
    db = f"sqlite:///{tmp_path}/scores.db"
    first = run(env, tmp_path, db=db, as_of=AS_OF_1)
    copy = tmp_path / "leads (copy).csv"
    shutil.copyfile(env["leads_csv"], copy)
    second = run(env, tmp_path, db=db, as_of=AS_OF_1, leads=copy)
    assert second["batch_id"] == first["batch_id"]
    with scoring_io.engine_for(scoring_io.SqlTarget(db)) as eng:
        table = scoring_io.read_batches(eng, "scored_leads")
    assert len(table) == first["counts"]["scored"] == table["lead_id"].nunique()


def test_an_as_of_before_every_lead_keeps_the_batch(env, tmp_path: Path) -> None:  # noqa: F811
    db = f"sqlite:///{tmp_path}/scores.db"
    first = run(env, tmp_path, db=db, as_of=AS_OF_1)
    with pytest.raises(DataError, match="--allow-empty"):
        run(env, tmp_path, db=db, as_of=pd.Timestamp("2020-01-01"))
    assert len(pd.read_parquet(tmp_path / "out" / "batch.parquet")) == first["counts"]["scored"]
    empty = run(env, tmp_path, db=db, as_of=pd.Timestamp("2020-01-01"), allow_empty=True)
    assert empty["counts"]["scored"] == 0
    assert len(pd.read_parquet(tmp_path / "out" / "batch.parquet")) == 0
