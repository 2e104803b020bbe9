"""Every export shape runs config-only, end to end: the real DVC pipeline (`dvc repro`) with
the shipped params.yaml on a source configuration, in a temporary copy of the project with
its own MLflow store.

- an event log alone (no leads table; tests/fixtures/eventlog/make_fixture.py, sources/
  eventlog_fixture.yaml): leads derived from the log, time-aware;
- a lead-level table with a sign-up date column and no event log (generated here).

Each run must exit 0, write a scored table and a `reports/accounting.json` that reconciles
with the raw rows of the export.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COPY = ("pipeline", "features", "models", "sources", "dvc.yaml", "params.yaml", "rules.yaml")
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def repro(work: Path, config: dict[str, Any]) -> Path:
    """Copy the project to `work`, write `config` as sources/shape.yaml, point params.yaml's
    `source` at it (every other setting as shipped, except a tiny unused synthetic sample
    for the `generate` stage) and run `dvc repro`."""
    work.mkdir(parents=True)
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, work / name)
    (work / "sources" / "shape.yaml").write_text(yaml.safe_dump(config, sort_keys=False),
                                                 encoding="utf-8")
    params = yaml.safe_load((work / "params.yaml").read_text(encoding="utf-8"))
    params["source"] = "sources/shape.yaml"
    params["generate"]["leads"] = 200  # the synthetic stage still runs; its data is unused
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
    env.pop("MLFLOW_REGISTRY_URI", None)
    assert _run([f"{BIN}/dvc", "init", "--no-scm", "-q"], work, env).returncode == 0
    _run([f"{BIN}/dvc", "config", "core.analytics", "false"], work, env)
    done = _run([f"{BIN}/dvc", "repro"], work, env)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return work


def check_accounting(work: Path, raw_rows: int) -> dict[str, Any]:
    """The scored table exists and every raw lead row is accounted for."""
    scored = pd.read_parquet(work / "data" / "scored" / "shape" / "scored_leads.parquet")
    assert len(scored) > 0 and scored["lead_id"].is_unique
    assert scored["score"].between(1, 99).all()
    accounting = json.loads((work / "reports" / "accounting.json").read_text(encoding="utf-8"))
    assert accounting["raw_rows"] == raw_rows
    assert accounting["scored"] == len(scored)
    assert raw_rows == (accounting["duplicates_dropped"] + accounting["rejected_at_ingest"]
                        + accounting["scored"] + accounting["not_open"]
                        + accounting["rejected_at_scoring"])
    return accounting


# ------------------------------------------------------------------ an event log only


def _eventlog_module() -> Any:
    path = ROOT / "tests" / "fixtures" / "eventlog" / "make_fixture.py"
    spec = importlib.util.spec_from_file_location("eventlog_fixture", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_event_log_alone_runs_the_pipeline(tmp_path: Path) -> None:
    events = _eventlog_module().make(n_users=900)
    export = tmp_path / "events.csv"
    events.to_csv(export, index=False, lineterminator="\n")
    config = yaml.safe_load((ROOT / "sources" / "eventlog_fixture.yaml").read_text("utf-8"))
    config["events"]["path"] = str(export)
    work = repro(tmp_path / "project", config)

    users = events["user_id"].nunique()
    accounting = check_accounting(work, users)  # one raw lead per user
    buyers = events.loc[events["event_name"] == "purchase", "user_id"].nunique()
    assert accounting["not_open_by_reason"]["converted"] == buyers
    record = json.loads((work / "data" / "interim" / "source.json").read_text("utf-8"))
    assert record["mode"] == "time_aware"
    leads = pd.read_parquet(work / "data" / "interim" / "leads.parquet")
    assert len(leads) == users and int(leads["converted"].sum()) == buyers
    assert "app_version" not in leads.columns  # changes within a user: not a lead column
    frame = pd.read_parquet(work / "data" / "features" / "train.parquet")
    assert frame["as_of"].notna().all()
    assert frame["evt_pricing_view_all"].sum() > 0 and frame["label"].sum() >= 50
    # the conversion event is never before an as_of that makes an example (point in time)
    assert frame["evt_purchase_all"].sum() == 0
    summary = json.loads((work / "data" / "models" / "summary.json").read_text("utf-8"))
    assert summary["split"]["method"] == "time"


# ------------------------------------------- a lead-level table with a date, no event log


def lead_table(n: int = 1200, seed: int = 7) -> pd.DataFrame:
    """A CRM lead list as of 2025-06-30: a sign-up date (dd/mm/yyyy), fit columns,
    aggregated activity, and the status. Recent sign-ups convert less (less time to)."""
    rng = np.random.default_rng(seed)
    export = pd.Timestamp("2025-06-30")
    age = rng.uniform(0, 540, n)
    signup = export - pd.to_timedelta(age, unit="D")
    channel = rng.choice(["Google", "Referral", "Webinar", "Direct"], n)
    size = rng.choice(["free", "starter", "team", "enterprise"], n)
    visits = rng.poisson(3, n)
    effect = {"Google": 0.0, "Referral": 1.0, "Webinar": 0.5, "Direct": -0.3}
    logit = (-1.6 + np.vectorize(effect.get)(channel) + 0.25 * visits
             + 0.8 * np.minimum(age, 90) / 90 - 0.8)
    won = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame({
        "Lead ID": [f"L-{i:05d}" for i in range(n)],
        "Sign-up Date": signup.strftime("%d/%m/%Y"),
        "Channel": channel,
        "Plan": size,
        "Website Visits": visits,
        "Status": np.where(won, "Won", "Open"),
    })


def test_a_lead_level_table_with_a_date_runs_the_pipeline(tmp_path: Path) -> None:
    table = lead_table()
    export = tmp_path / "leads.csv"
    table.to_csv(export, index=False, lineterminator="\n")
    config = {
        "name": "lead list with sign-up dates",
        "exported_at": "2025-06-30",
        "leads": {
            "path": str(export),
            "read": {"delimiter": ",", "date_format": "%d/%m/%Y"},
            "map": {"lead_id": "Lead ID", "source": "Channel"},
            "default_role": "error",
            "roles": {
                "Sign-up Date": {"role": "fit", "type": "date", "name": "signup"},
                "Plan": "fit",
                "Website Visits": {"role": "behaviour", "type": "number"},
            },
        },
        "outcome": {"column": "Status", "positive": ["Won"], "negative": ["Open"]},
    }
    work = repro(tmp_path / "project", config)

    accounting = check_accounting(work, len(table))
    assert accounting["not_open_by_reason"]["converted"] == int((table["Status"] == "Won").sum())
    assert accounting["scored"] == int((table["Status"] == "Open").sum())
    record = json.loads((work / "data" / "interim" / "source.json").read_text("utf-8"))
    assert record["mode"] != "time_aware"
    frame = pd.read_parquet(work / "data" / "features" / "train.parquet")
    assert len(frame) == len(table) and frame["as_of"].isna().all()
    # the sign-up date became "days before the export", exactly
    days = frame.set_index("lead_id")["extra_signup_days"]
    expected = (pd.Timestamp("2025-06-30") - pd.to_datetime(table["Sign-up Date"],
                                                            format="%d/%m/%Y")).dt.days
    assert days.loc[table["Lead ID"]].to_numpy() == pytest.approx(expected.to_numpy())
