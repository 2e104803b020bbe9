"""The synthetic CRM generator: contract shape, determinism, time logic, and a truth that
matches the process that made the data."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import expm

from pipeline import synth
from pipeline.errors import ConfigError
from pipeline.stages import generate as stage
from pipeline.synth import SynthSettings

N = 4_000
SETTINGS = SynthSettings(n_leads=N, seed=7)
END = pd.Timestamp(SETTINGS.end)
HORIZON = pd.Timedelta(days=SETTINGS.horizon_days)

LEAD_COLUMNS = [
    "lead_id", "created_at", "source", "email", "first_name", "last_name", "phone", "company",
    "company_size", "industry", "country", "job_title", "budget", "need", "timeframe",
    "converted", "converted_at", "lost_at", "status",
]
CONTRACT_EVENT_TYPES = {
    "site_visit", "blog_read", "case_study_view", "lead_magnet_download", "newsletter_signup",
    "webinar_registration", "webinar_attended", "retargeting_click", "pricing_view",
    "price_list_download", "demo_request", "quote_request", "consultation_request",
    "chat_started", "email_sent", "email_open", "email_click", "unsubscribe", "careers_view",
    "contract_signed", "onboarding_view", "invoice_paid",
}
POST_CONVERSION = ["contract_signed", "onboarding_view", "invoice_paid"]
STAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    stage.run(SETTINGS, out)
    return out


@pytest.fixture(scope="module")
def raw(out_dir: Path) -> dict[str, pd.DataFrame]:
    """The three files as text, exactly as written."""
    return {name: pd.read_csv(out_dir / f"{name}.csv", dtype=str, keep_default_na=False)
            for name in ("leads", "events", "truth")}


@pytest.fixture(scope="module")
def leads(out_dir: Path) -> pd.DataFrame:
    return pd.read_csv(out_dir / "leads.csv", parse_dates=["created_at", "converted_at", "lost_at"])


@pytest.fixture(scope="module")
def events(out_dir: Path) -> pd.DataFrame:
    return pd.read_csv(out_dir / "events.csv", parse_dates=["timestamp"])


@pytest.fixture(scope="module")
def truth(out_dir: Path, leads: pd.DataFrame) -> pd.DataFrame:
    """truth.csv with each row's observed label and whether its horizon is complete."""
    t = pd.read_csv(out_dir / "truth.csv", parse_dates=["as_of"])
    t = t.merge(leads[["lead_id", "created_at", "converted_at"]], on="lead_id", how="left")
    t["label"] = ((t["converted_at"] > t["as_of"])
                  & (t["converted_at"] <= t["as_of"] + HORIZON)).astype(int)
    t["complete"] = t["as_of"] + HORIZON <= END
    return t


@pytest.fixture(scope="module")
def data() -> synth.SynthChunk:
    return synth.generate(SETTINGS)


# -- determinism -------------------------------------------------------------------------
def test_same_seed_gives_byte_identical_files(out_dir: Path, tmp_path: Path) -> None:
    stage.run(SETTINGS, tmp_path)
    for name in ("leads.csv", "events.csv", "truth.csv"):
        assert sha256(tmp_path / name) == sha256(out_dir / name), name


def test_different_seed_gives_different_data(out_dir: Path, tmp_path: Path) -> None:
    stage.run(SynthSettings(n_leads=N, seed=8), tmp_path)
    for name in ("leads.csv", "events.csv", "truth.csv"):
        assert sha256(tmp_path / name) != sha256(out_dir / name), name


def test_chunks_do_not_depend_on_generation_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synth, "CHUNK_SIZE", 700)
    settings = SynthSettings(n_leads=2_000, seed=3)
    last_first = synth.generate_chunk(settings, 2)
    in_order = list(synth.iter_chunks(settings))
    assert [c.leads["lead_id"].size for c in in_order] == [700, 700, 600]
    for key, values in last_first.events.items():
        np.testing.assert_array_equal(values, in_order[2].events[key])
    np.testing.assert_array_equal(last_first.leads["email"], in_order[2].leads["email"])
    assert in_order[2].leads["lead_id"][0] == "L0001401"
    created = np.concatenate([c.leads["created_at"] for c in in_order])
    assert (np.diff(created) >= 0).all()  # ids follow creation time across chunks


def test_chunk_seeds_are_the_spawned_children() -> None:
    children = np.random.SeedSequence(42).spawn(4)
    for index, child in enumerate(children):
        assert (synth.chunk_seed(42, index).generate_state(4) == child.generate_state(4)).all()


# -- contract ----------------------------------------------------------------------------
def test_files_have_the_contract_columns(raw: dict[str, pd.DataFrame]) -> None:
    assert list(raw["leads"].columns) == LEAD_COLUMNS
    assert list(raw["events"].columns) == ["lead_id", "timestamp", "event_type", "page", "channel"]
    assert list(raw["truth"].columns) == ["lead_id", "as_of", "p_true"]


def test_timestamps_are_written_to_the_second(raw: dict[str, pd.DataFrame]) -> None:
    for name, cols in (("leads", ["created_at", "converted_at", "lost_at"]),
                       ("events", ["timestamp"]), ("truth", ["as_of"])):
        for col in cols:
            values = raw[name][col][raw[name][col] != ""]
            assert values.str.match(STAMP).all(), (name, col, values.head(3).tolist())
    assert (raw["leads"]["created_at"] != "").all()


def test_lead_values_follow_the_contract(leads: pd.DataFrame) -> None:
    assert len(leads) == N
    assert leads["lead_id"].is_unique
    assert leads["lead_id"].iloc[0] == "L0000001"
    assert leads["lead_id"].iloc[-1] == f"L{N:07d}"
    assert leads["lead_id"].str.fullmatch(r"L\d{7}").all()
    assert set(leads["source"]) == {
        "organic_search", "paid_search", "social_ads", "referral", "email_campaign", "partner",
        "event", "direct",
    }
    assert set(leads["budget"].dropna()) == {"<10k", "10k-50k", "50k-250k", ">250k"}
    assert set(leads["need"].dropna()) == {"exploring", "problem_identified", "urgent"}
    assert set(leads["timeframe"].dropna()) == {"0-3m", "3-6m", "6-12m", "12m+"}
    for col in ("budget", "need", "timeframe"):  # BANT answers are often missing
        assert 0.3 < leads[col].isna().mean() < 0.8, col
    assert leads["country"].dropna().str.fullmatch(r"[A-Z]{2}").all()
    size = leads["company_size"].dropna()
    assert (size >= 1).all() and (size == size.round()).all()
    assert size.max() > 5_000 and size.min() < 10
    assert set(leads["converted"]) == {0, 1}
    assert set(leads["status"]) == {"new", "contacted", "qualified", "won", "lost"}


def test_emails_look_like_a_real_crm(leads: pd.DataFrame) -> None:
    email = leads["email"].dropna()
    domain = email.str.extract(r"@([^@]+)$")[0]
    free = domain.isin(["gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com"])
    disposable = domain.isin(["mailinator.com", "10minutemail.com", "yopmail.com",
                              "guerrillamail.com", "trashmail.com", "tempmail.dev"])
    valid = email.str.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z.]+")
    assert 0.15 < free.mean() < 0.6
    assert 0.005 < disposable.mean() < 0.08
    assert 0.01 < (~valid).mean() < 0.1  # some invalid addresses
    assert email.str.fullmatch(r"[a-z]+\.[a-z]+@[a-z]+\.[a-z.]+").mean() > 0.1  # name.surname@
    assert email.str.fullmatch(r"[a-z]+\d{1,5}@(gmail|yahoo|hotmail|outlook|icloud)\.com").any()
    titles = leads["job_title"].dropna()
    assert (titles != titles.str.strip()).any()  # messy whitespace ...
    assert (titles.str.lower() == titles).any() and (titles.str.upper() == titles).any()  # case
    wanted = {"ceo", "vp of marketing", "head of sales", "marketing intern", "software engineer"}
    assert wanted <= set(titles.str.strip().str.lower())


def test_event_values_follow_the_contract(events: pd.DataFrame, leads: pd.DataFrame) -> None:
    assert set(events["event_type"]) == CONTRACT_EVENT_TYPES
    assert set(events["channel"]) == {"web", "email", "ads", "chat", "sales"}
    assert events["lead_id"].isin(leads["lead_id"]).all()
    web = events["channel"] == "web"
    assert events.loc[web, "page"].str.startswith("/").all()
    assert events.loc[events["event_type"] == "email_sent", "page"].isna().all()
    # sorted by lead, then time
    assert events["lead_id"].is_monotonic_increasing
    same_lead = events["lead_id"].to_numpy()[1:] == events["lead_id"].to_numpy()[:-1]
    assert (np.diff(events["timestamp"].to_numpy())[same_lead] >= np.timedelta64(0)).all()
    assert 40 < len(events) / N < 70  # ~50 events per lead at activity_scale 1


def test_activity_scale_scales_the_event_volume() -> None:
    small = SynthSettings(n_leads=1_000, seed=7)
    full = synth.generate(small).events["lead"].size
    half = synth.generate(SynthSettings(n_leads=1_000, seed=7, activity_scale=0.5)).events
    assert 0.45 < half["lead"].size / full < 0.65
    # the leads and outcomes do not change with the activity scale
    a = synth.generate(small).leads
    b = synth.generate(SynthSettings(n_leads=1_000, seed=7, activity_scale=0.5)).leads
    np.testing.assert_array_equal(a["converted_at"], b["converted_at"])


# -- outcomes and time -------------------------------------------------------------------
def test_base_rate_is_b2b_like(leads: pd.DataFrame) -> None:
    assert 0.05 <= leads["converted"].mean() <= 0.15


def test_conversion_dates_are_consistent(leads: pd.DataFrame) -> None:
    won = leads["converted"] == 1
    assert (leads["converted_at"].notna() == won).all()
    assert (leads.loc[won, "converted_at"] > leads.loc[won, "created_at"]).all()
    assert (leads.loc[won, "converted_at"] <= END).all()
    days = (leads.loc[won, "converted_at"] - leads.loc[won, "created_at"]).dt.days
    assert (days > 60).mean() > 0.1  # some convert months after creation
    assert (leads["status"] == "won").equals(won)  # the leaky CRM field


def test_lost_leads_are_stale_non_converters(
    leads: pd.DataFrame, events: pd.DataFrame
) -> None:
    lost = leads["lost_at"].notna()
    assert 0.1 < lost.mean() < 0.8
    assert (leads.loc[lost, "converted"] == 0).all()
    assert (leads.loc[lost, "lost_at"] < END).all()
    assert ((leads["status"] == "lost") == lost).all()
    own = events[events["event_type"] != "email_sent"]
    last = own.groupby("lead_id")["timestamp"].max()
    lost_at = leads.loc[lost].set_index("lead_id")["lost_at"]
    assert (lost_at > last.reindex(lost_at.index)).all()  # closed after the last activity


def test_no_event_outside_the_lead_lifetime(events: pd.DataFrame, leads: pd.DataFrame) -> None:
    assert events["timestamp"].max() < END
    created = events["lead_id"].map(leads.set_index("lead_id")["created_at"])
    assert (events["timestamp"] >= created).all()


def test_post_conversion_events_only_after_conversion(
    events: pd.DataFrame, leads: pd.DataFrame
) -> None:
    conv = events["lead_id"].map(leads.set_index("lead_id")["converted_at"])
    post = events["event_type"].isin(POST_CONVERSION)
    assert post.any()
    assert (events.loc[post, "timestamp"] > conv[post]).all()
    # leak bait: customers keep visiting pricing after they bought
    assert ((events["event_type"] == "pricing_view") & (events["timestamp"] > conv)).any()


def test_job_seekers_rarely_convert(events: pd.DataFrame, leads: pd.DataFrame) -> None:
    careers = events.loc[events["event_type"] == "careers_view", "lead_id"].value_counts()
    seekers = careers[careers >= 3].index
    assert len(seekers) > 20
    assert leads.set_index("lead_id").loc[seekers, "converted"].mean() < 0.03


# -- truth -------------------------------------------------------------------------------
def test_truth_rows_are_the_open_snapshots(truth: pd.DataFrame, leads: pd.DataFrame) -> None:
    expected = []
    for age in SETTINGS.snapshot_ages_days:
        as_of = leads["created_at"] + pd.Timedelta(days=age)
        open_ = ((as_of <= END)
                 & ~(leads["converted_at"] <= as_of)
                 & ~(leads["lost_at"] <= as_of))
        expected.append(pd.DataFrame({"lead_id": leads["lead_id"][open_], "as_of": as_of[open_]}))
    want = pd.concat(expected).sort_values(["lead_id", "as_of"]).reset_index(drop=True)
    got = truth[["lead_id", "as_of"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    assert ((truth["as_of"] + HORIZON) > END).any()  # horizons past the end are included
    assert truth["p_true"].between(0, 1).all()
    assert truth["p_true"].nunique() > 1_000


@pytest.mark.parametrize("band", [(0.0, 0.03), (0.03, 0.1), (0.1, 0.3), (0.3, 1.0)])
def test_truth_matches_observed_outcomes(truth: pd.DataFrame, band: tuple[float, float]) -> None:
    """Over snapshots with a complete horizon, sum(label - p_true) is ~0 in every band of
    p_true. Rows of one lead are correlated, so the variance comes from per-lead sums."""
    rows = truth[truth["complete"] & truth["p_true"].between(*band, inclusive="left")]
    assert len(rows) > 100
    per_lead = (rows["label"] - rows["p_true"]).groupby(rows["lead_id"]).sum()
    z = per_lead.sum() / np.sqrt((per_lead**2).sum())
    assert abs(z) < 4.0, (band, len(rows), rows["label"].mean(), rows["p_true"].mean())


def test_truth_overall_rate_within_binomial_tolerance(truth: pd.DataFrame) -> None:
    rows = truth[truth["complete"]]
    p = rows["p_true"].to_numpy()
    se = np.sqrt((p * (1 - p)).sum()) / len(p)
    assert abs(rows["label"].mean() - p.mean()) < 4 * 2 * se  # x2: rows share leads


def test_truth_separates_outcomes(truth: pd.DataFrame) -> None:
    rows = truth[truth["complete"]]
    pos = rows.loc[rows["label"] == 1, "p_true"].to_numpy()
    neg = rows.loc[rows["label"] == 0, "p_true"].to_numpy()
    auc = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert 0.75 < auc < 0.97  # informative, but the future stays uncertain


def first_before(events: pd.DataFrame, truth: pd.DataFrame, event_type: str) -> pd.Series:
    first = events[events["event_type"] == event_type].groupby("lead_id")["timestamp"].min()
    return truth["lead_id"].map(first) < truth["as_of"]


def test_buying_signals_raise_the_true_probability(
    truth: pd.DataFrame, events: pd.DataFrame
) -> None:
    p = truth["p_true"]
    demo = first_before(events, truth, "demo_request")
    assert demo.sum() > 100
    assert p[demo].mean() > 1.5 * p[~demo].mean()
    price_list = first_before(events, truth, "price_list_download")
    newsletter = first_before(events, truth, "newsletter_signup")
    lift_price = p[price_list].mean() / p[~price_list].mean()
    lift_news = p[newsletter].mean() / p[~newsletter].mean()
    assert lift_price > 2.0  # far more than a "+20 points" rule suggests ...
    assert 0.6 < lift_news < 1.3  # ... while a newsletter signup barely matters
    unsub = first_before(events, truth, "unsubscribe")
    assert p[unsub].mean() < 0.5 * p[~unsub].mean()


def test_true_probability_reproduces_the_truth_file(
    data: synth.SynthChunk, truth: pd.DataFrame
) -> None:
    lead = truth["lead_id"].str[1:].astype(int).to_numpy() - 1
    p = synth.true_probability(
        data.latent, lead, truth["as_of"].to_numpy(), SETTINGS.horizon_days
    )
    np.testing.assert_allclose(p, truth["p_true"].to_numpy(), rtol=1e-12, atol=1e-15)


def test_true_probability_at_any_moment(data: synth.SynthChunk) -> None:
    latent, leads = data.latent, data.leads
    start = np.datetime64(SETTINGS.start, "s")
    created = start + leads["created_at"].astype("timedelta64[s]")
    rows = np.arange(300)
    before = synth.true_probability(latent, rows, created[rows] - np.timedelta64(1, "s"), 90)
    assert np.isnan(before).all()
    later = synth.true_probability(latent, rows, created[rows] + np.timedelta64(45, "D"), 30)
    won = np.flatnonzero(leads["converted"][:300] == 1)
    conv = start + leads["converted_at"][won].astype("timedelta64[s]")
    assert np.isnan(synth.true_probability(latent, won, conv, 90)).all()
    ok = ~np.isnan(later)
    assert ok.mean() > 0.7 and ((later[ok] >= 0) & (later[ok] <= 1)).all()
    short = synth.true_probability(latent, rows, created[rows] + np.timedelta64(45, "D"), 7)
    assert (short[ok] <= later[ok] + 1e-12).all()  # a longer horizon never lowers it
    with pytest.raises(ValueError, match="horizon_days"):
        synth.true_probability(latent, rows, created[rows], 0)


def test_absorption_probability_matches_the_matrix_exponential(data: synth.SynthChunk) -> None:
    """Golden check of the uniformisation against expm of the full generator."""
    q = data.latent.q[:5]
    got = synth._absorption_probability(q, 90.0)
    for k in range(q.shape[0]):
        gen = np.zeros((8, 8))
        gen[:6] = q[k]
        np.fill_diagonal(gen, 0.0)
        np.fill_diagonal(gen, -gen.sum(axis=1))
        want = expm(gen * 90.0)[:6, synth.CONVERTED]
        np.testing.assert_allclose(got[k], want, rtol=1e-9, atol=1e-12)


def test_phase_path_and_outcomes_agree(data: synth.SynthChunk) -> None:
    lat = data.latent
    conv = lat.path_phase == synth.CONVERTED
    assert (data.leads["converted"][lat.path_lead[conv]] == 1).all()
    assert conv.sum() == data.leads["converted"].sum()
    ends = np.append(lat.path_lead[1:] != lat.path_lead[:-1], True)
    # nothing follows an absorbing phase
    absorbing = np.isin(lat.path_phase, [synth.GONE, synth.CONVERTED])
    assert (ends[absorbing]).all()


# -- settings ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_leads": -1}, "`generate.leads` must be > 0; got -1"),
        ({"n_leads": 0}, "`generate.leads` must be > 0; got 0"),
        ({"n_leads": 2.5}, "`generate.leads` must be > 0; got 2.5"),
        ({"seed": -3}, "`generate.seed` must be an integer >= 0; got -3"),
        ({"months": 0}, "`generate.months` must be between 1 and 240; got 0"),
        ({"start": "2025-01-01"}, "`generate.start` must be a date"),
        ({"snapshot_ages_days": ()}, "`snapshots.ages_days` must be a non-empty list"),
        ({"snapshot_ages_days": (1, 1)}, "distinct integers >= 0; got (1, 1)"),
        ({"snapshot_ages_days": (-1,)}, "distinct integers >= 0; got (-1,)"),
        ({"horizon_days": 0}, "`label.horizon_days` must be > 0; got 0"),
        ({"activity_scale": 0.0}, "`generate.activity_scale` must be > 0; got 0.0"),
        ({"activity_scale": float("inf")}, "`generate.activity_scale` must be finite"),
    ],
)
def test_settings_are_validated(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        SynthSettings(**kwargs)
    with pytest.raises(ConfigError):  # the CLI prints it without a traceback
        SynthSettings(**kwargs)


def test_settings_defaults_and_data_end() -> None:
    s = SynthSettings()
    assert (s.n_leads, s.seed, s.months, s.horizon_days) == (20_000, 42, 18, 90)
    assert s.end == dt.date(2026, 7, 1)
    assert SynthSettings(start=dt.date(2025, 1, 31), months=1).end == dt.date(2025, 2, 28)
    assert SynthSettings(snapshot_ages_days=[1, 7]).snapshot_ages_days == (1, 7)


def test_settings_from_params_prefers_explicit_options() -> None:
    class Params:
        generate = {"leads": 500, "seed": 3, "start": "2024-03-01", "months": 6}
        snapshots = {"ages_days": [2, 14]}
        label = {"horizon_days": 30}

    s = stage.settings_from_params(Params(), seed=9)
    assert (s.n_leads, s.seed, s.start, s.months) == (500, 9, dt.date(2024, 3, 1), 6)
    assert (s.snapshot_ages_days, s.horizon_days) == ((2, 14), 30)
    assert stage.settings_from_params(None) == SynthSettings()
    Params.generate = {"lead": 5}
    with pytest.raises(ConfigError, match="unknown key `generate.lead`"):
        stage.settings_from_params(Params())
    with pytest.raises(ConfigError, match="`generate.start` must be a date"):
        stage.settings_from_params(None, start="01/02/2025")


def test_run_reports_counts(tmp_path: Path) -> None:
    summary = stage.main(None, leads=300, seed=1, out=tmp_path, months=6)
    leads = pd.read_csv(tmp_path / "leads.csv")
    assert summary["leads"] == 300 == len(leads)
    assert summary["conversions"] == leads["converted"].sum()
    assert summary["base_rate"] == pytest.approx(leads["converted"].mean())
    assert summary["events"] == len(pd.read_csv(tmp_path / "events.csv"))
    assert summary["truth_rows"] == len(pd.read_csv(tmp_path / "truth.csv"))
    assert summary["data_end"] == "2025-07-01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.csv", "leads.csv", "truth.csv"]
