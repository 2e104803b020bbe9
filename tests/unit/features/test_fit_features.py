"""Fit features: email shape, title rules, size buckets, BANT, pass-through columns."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from features.fit import (
    domain_list,
    email_domain_type,
    email_local_kind,
    fit_features,
    region_of,
    size_bucket,
    title_function,
    title_seniority,
)
from features.settings import FeatureSettings


def test_shipped_domain_lists_are_large_and_disjoint():
    free, disposable = domain_list("free_mail"), domain_list("disposable")
    assert len(free) >= 200 and len(disposable) >= 200
    assert "gmail.com" in free and "mailinator.com" in disposable
    assert not free & disposable


@pytest.mark.parametrize(("email", "kind"), [
    ("Anna.Berg@Acme.io", "corporate"),
    ("superdrakon12345@gmail.com", "free_mail"),
    ("x@web.de", "free_mail"),
    ("temp@mailinator.com", "disposable"),
    ("temp@inbox.mailinator.com", "disposable"),
    ("no-at-sign.example.com", "invalid"),
    ("a@b", "invalid"),
    ("two@@acme.io", "invalid"),
    (None, "unknown"),
    ("   ", "unknown"),
])
def test_email_domain_type(email, kind):
    assert email_domain_type(pd.Series([email], dtype="str")).tolist() == [kind]


@pytest.mark.parametrize(("email", "kind"), [
    ("anna.berg@acme.io", "name"),
    ("j.smith@acme.io", "name"),
    ("mike_lee@acme.io", "name"),
    ("anna-maria.berg@acme.io", "name"),
    ("superdrakon12345@gmail.com", "handle"),
    ("xx_gamer99@gmail.com", "handle"),
    ("info@acme.io", "role"),
    ("Sales@acme.io", "role"),
    ("jsmith@acme.io", "other"),
    ("broken@", "unknown"),
    (None, "unknown"),
])
def test_email_local_kind(email, kind):
    assert email_local_kind(pd.Series([email], dtype="str")).tolist() == [kind]


@pytest.mark.parametrize(("title", "seniority", "function"), [
    ("CEO", "c_level", "executive"),
    ("Co-Founder & CTO", "c_level", "it_engineering"),
    ("Chief Operating Officer", "c_level", "operations"),
    ("VP Sales", "vp", "sales"),
    ("Vice President, Marketing", "vp", "marketing"),
    ("Director of Human Resources", "director", "hr"),
    ("Head of IT", "head", "it_engineering"),
    ("marketing manager", "manager", "marketing"),
    ("Senior Accountant", "senior", "finance"),
    ("Software Engineer", "individual", "it_engineering"),
    ("Logistics Coordinator", "individual", "operations"),
    ("Marketing Intern", "intern", "marketing"),
    ("Working Student", "intern", "other"),
    ("Astronaut", "individual", "other"),
    (None, "unknown", "unknown"),
    ("", "unknown", "unknown"),
])
def test_title_rules(title, seniority, function):
    s = pd.Series([title], dtype="str")
    assert title_seniority(s).tolist() == [seniority]
    assert title_function(s).tolist() == [function]


def test_size_buckets():
    sizes = pd.Series([0, 1, 10, 11, 50, 51, 200, 201, 1000, 1001, 5000, 5001, None, -1],
                      dtype="Int64")
    assert size_bucket(sizes).tolist() == [
        "1-10", "1-10", "1-10", "11-50", "11-50", "51-200", "51-200", "201-1000", "201-1000",
        "1001-5000", "1001-5000", "5000+", "unknown", "unknown"]


def test_regions():
    got = region_of(pd.Series(["us", "DE", "UK", "br", "JP", "ZA", "XX", None], dtype="str"))
    assert got.tolist() == ["north_america", "europe", "europe", "latin_america",
                            "asia_pacific", "middle_east_africa", "other", "unknown"]


LEADS = pd.DataFrame({
    "lead_id": pd.Series(["a", "b", "c"], dtype="str"),
    "created_at": pd.to_datetime(["2025-01-01"] * 3).astype("datetime64[us]"),
    "email": pd.Series(["anna.berg@acme.io", "dude77@gmail.com", None], dtype="str"),
    "first_name": pd.Series(["Anna", "Dude", None], dtype="str"),
    "last_name": pd.Series(["Berg", None, None], dtype="str"),
    "phone": pd.Series(["+49 1", None, None], dtype="str"),
    "company": pd.Series(["Acme GmbH", None, None], dtype="str"),
    "company_size": pd.array([120, None, 9], dtype="Int64"),
    "industry": pd.Series(["Software ", None, "retail"], dtype="str"),
    "country": pd.Series(["de", "US", None], dtype="str"),
    "job_title": pd.Series(["Head of Marketing", None, "Intern"], dtype="str"),
    "budget": pd.Series(["10k-50k", None, ">250k"], dtype="str"),
    "need": pd.Series(["urgent", None, None], dtype="str"),
    "timeframe": pd.Series(["0-3m", None, ""], dtype="str"),
    "source": pd.Series(["Referral", "paid_search", None], dtype="str"),
    "converted": [1, 0, 0],
    "lead_status": pd.Series(["Closed Won", "Open", None], dtype="str"),
    "lead_score": pd.Series(["12", "3.5", None], dtype="str"),
    "secret": [1.0, 2.0, 3.0],
})


@pytest.fixture(scope="module")
def fit() -> pd.DataFrame:
    return fit_features(LEADS, FeatureSettings(exclude=("secret",)))


def test_personal_and_outcome_columns_never_come_out(fit):
    text = fit.astype(str).to_string()
    for value in ("anna.berg", "dude77", "Anna", "Berg", "+49", "Acme GmbH"):
        assert value not in text
    for col in fit.columns:
        assert col == "lead_id" or col.startswith(("fit_", "extra_"))
    assert "extra_converted" not in fit.columns


def test_fit_values(fit):
    a, b, c = (fit.iloc[i] for i in range(3))
    assert (a.fit_email_domain_type, b.fit_email_domain_type, c.fit_email_domain_type) == (
        "corporate", "free_mail", "unknown")
    assert (a.fit_email_local_kind, b.fit_email_local_kind) == ("name", "handle")
    assert (a.fit_seniority, a.fit_function) == ("head", "marketing")
    assert (b.fit_seniority, c.fit_seniority) == ("unknown", "intern")
    assert (a.fit_company_size_bucket, b.fit_company_size_bucket, c.fit_company_size_bucket) == (
        "51-200", "unknown", "1-10")
    assert a.fit_log_company_size == pytest.approx(math.log1p(120))
    assert math.isnan(b.fit_log_company_size)
    assert (a.fit_industry, b.fit_industry) == ("software", "unknown")
    assert (a.fit_country, a.fit_region, c.fit_region) == ("DE", "europe", "unknown")
    assert (a.fit_budget, a.fit_need, a.fit_timeframe) == ("10k-50k", "urgent", "0-3m")
    assert (a.fit_budget_rank, a.fit_need_rank, a.fit_timeframe_rank) == (1.0, 2.0, 3.0)
    assert (a.fit_source, b.fit_source, c.fit_source) == ("referral", "paid_search", "unknown")


def test_bant_completeness(fit):
    assert fit["fit_bant_answered"].tolist() == [3, 0, 1]


def test_categories_are_category_dtype_with_unknown(fit):
    assert isinstance(fit["fit_industry"].dtype, pd.CategoricalDtype)
    assert "unknown" in list(fit["fit_industry"].cat.categories)
    assert list(fit["fit_seniority"].cat.categories)[-1] == "unknown"


def test_extra_columns_pass_through(fit):
    assert fit["extra_lead_status"].tolist() == ["closed won", "open", "unknown"]
    assert fit["extra_lead_score"].tolist()[:2] == [12.0, 3.5]
    assert math.isnan(fit["extra_lead_score"].iloc[2])
    assert "extra_secret" not in fit.columns


def test_excluded_contract_column_yields_no_feature():
    fit = fit_features(LEADS, FeatureSettings(exclude=("job_title", "email")))
    assert "fit_seniority" not in fit.columns and "fit_function" not in fit.columns
    assert "fit_email_domain_type" not in fit.columns


def test_input_not_mutated(fit):
    before = LEADS.copy(deep=True)
    fit_features(LEADS, FeatureSettings())
    pd.testing.assert_frame_equal(LEADS, before)
