"""rules.yaml: the shipped rule set, errors that point at the line, and the learned file's
round trip (rules.yaml -> learned yaml -> load)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from models.rules import LearnSettings, RuleSet, learn_points, learned_ruleset, vocabulary
from models.settings import BandSet, BandSpec
from pipeline.errors import ConfigError
from pipeline.rules_config import (
    dump_rules,
    load_rules,
    load_ruleset,
    parse_rules_text,
    write_rules,
)

ROOT = Path(__file__).resolve().parents[3]
SYNTHETIC_TYPES = (
    "site_visit", "blog_read", "case_study_view", "lead_magnet_download", "newsletter_signup",
    "webinar_registration", "webinar_attended", "retargeting_click", "pricing_view",
    "price_list_download", "demo_request", "quote_request", "consultation_request",
    "chat_started", "email_sent", "email_open", "email_click", "unsubscribe", "careers_view",
)


def contract_leads() -> pd.DataFrame:
    """An empty leads table with the contract's columns and types."""
    return pd.DataFrame({
        "lead_id": pd.Series([], dtype="str"),
        "created_at": pd.Series([], dtype="datetime64[us]"),
        **{c: pd.Series([], dtype="str") for c in (
            "source", "email", "industry", "country", "job_title", "budget", "need",
            "timeframe")},
        "company_size": pd.Series([], dtype="Int64"),
        "converted": pd.Series([], dtype="Int64"),
    })


def vocab(types=SYNTHETIC_TYPES, groups=None):
    events = pd.DataFrame({"lead_id": "x", "timestamp": pd.Timestamp("2025-01-01"),
                           "event_type": list(types)})
    return vocabulary(contract_leads(), events, None, groups)


def params_groups() -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    return params["features"]["event_groups"]


# --------------------------------------------------------------------------- shipped file


def test_shipped_rules_load_and_match_the_synthetic_data_and_params():
    rs = load_rules(ROOT / "rules.yaml", vocab(groups=params_groups()))
    points = dict(zip(rs.names, rs.points, strict=True))
    assert points["price list download"] == 20
    assert points["demo request"] == 30
    assert points["free mail address"] == -10
    assert points["inactivity"] == -5
    assert len(rs.names) == len(set(rs.names)) >= 20
    email_open = next(r for r in rs.rules if r.name == "email open")
    assert email_open.cap == 10
    bands = {b.set_name: b for b in rs.bands}
    assert bands["temperature"].names == ("cold", "warm", "hot")
    assert bands["temperature"].thresholds == (30, 70)
    assert bands["lifecycle"].names == ("lead", "MQL", "SQL")
    assert bands["lifecycle"].thresholds == (40, 80)
    # every event type a rule names is one a configured group knows
    grouped = {t for members in params_groups().values() for t in members}
    assert set(rs.event_types) <= grouped


# --------------------------------------------------------------------------- errors

TYPO = """\
# manual rules
rules:
  - name: site visit
    event: site_visit
    points: 1
  - name: price list
    event: price_lst_download
    points: 20
"""


def test_unknown_event_type_points_at_its_line_with_close_matches():
    with pytest.raises(ConfigError) as err:
        parse_rules_text(TYPO, "rules.yaml", vocab())
    assert str(err.value) == (
        "rules.yaml:7: rule 'price list' names event type 'price_lst_download', which the "
        "events never contain; close matches: price_list_download")


def test_event_types_of_the_configured_groups_are_known_even_when_absent():
    text = TYPO.replace("price_lst_download", "consultation_request")
    rs = parse_rules_text(text, "rules.yaml", vocab(types=["site_visit"], groups={
        "ready_to_buy": ["consultation_request"]}))
    assert rs.event_types == ["site_visit", "consultation_request"]
    with pytest.raises(ConfigError, match="rules.yaml:7: .*'consultation_request'"):
        parse_rules_text(text, "rules.yaml", vocab(types=["site_visit"]))


@pytest.mark.parametrize(("text", "line", "message"), [
    ("rules:\n  - {name: a, event: site_visit, points: 1}\n"
     "  - {name: b, event: [blog_read,\n      blog_raed], points: 1}\n",
     4, "'blog_raed', which the events never contain; close matches: blog_read"),
    ("rules:\n  - name: size\n    field: company_sise\n    range: [200, null]\n    points: 10\n",
     3, "field 'company_sise', which neither the leads nor the fit features have; close "
        "matches: company_size"),
    ("rules:\n  - name: boss\n    field: fit_seniority\n    in: [vp, c-level]\n    points: 10\n",
     4, "fit_seniority is never 'c-level'"),
    ("rules:\n  - {name: a, event: site_visit, points: 1}\n"
     "bands:\n  temperature:\n    warm: 30\n    hot: 20\n",
     6, "band `hot` of `temperature` starts at 20 points, which is not above `warm` (30)"),
    ("rules:\n  - {name: a, event: site_visit, points: 1}\n"
     "bands:\n  temperature: {warm: thirty, hot: 70}\n",
     4, "the threshold must be a number of points; got 'thirty'"),
    ("rules:\n  - {name: a, event: site_visit, points: 1}\n"
     "  - name: b\n    event: blog_read\n    points: 1\n    cap: -3\n",
     6, "rule 'b': `cap` must be a positive integer; got -3"),
    ("rules:\n  - {name: a, event: site_visit, points: 1}\n"
     "  - {name: a, event: blog_read, points: 1}\n",
     3, "rule name 'a' is used twice"),
    ("rules:\n  - {name: norway, field: country, equals: NO, points: 1}\n",
     2, "quote the value"),
    ("rules:\n  - name: a\n    event: site_visit\n    event: blog_read\n    points: 1\n",
     4, "key `event` appears twice in one mapping (first at line 3)"),
    ("rules:\n  - {name: a, event: site_visit, points: 1\n",
     3, "not valid YAML"),
    ("rule:\n  - {name: a, event: site_visit, points: 1}\n",
     1, "unknown top-level key `rule`"),
])
def test_errors_point_at_the_line(text, line, message):
    with pytest.raises(ConfigError) as err:
        parse_rules_text(text, "rules.yaml", vocab())
    assert str(err.value).startswith(f"rules.yaml:{line}: ")
    assert message in str(err.value)


def test_load_ruleset_checks_against_the_tables_it_will_score(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n"
                    "  - {name: visit, event: site_visit, points: 1}\n"
                    "  - {name: free mail, field: fit_email_domain_type, equals: free_mail,\n"
                    "     points: -10}\n"
                    "  - {name: big, field: company_size, range: [200, null], points: 10}\n",
                    encoding="utf-8")
    events = pd.DataFrame({"lead_id": ["a"], "timestamp": [pd.Timestamp("2025-01-01")],
                           "event_type": ["site_visit"]})
    frame = pd.DataFrame({"lead_id": ["a"], "as_of": [pd.Timestamp("2025-02-01")],
                          "fit_email_domain_type": pd.Categorical(["corporate"])})
    rs = load_ruleset(path, leads=contract_leads(), events=events, features=frame)
    assert rs.names == ["visit", "free mail", "big"]
    # without the leads table, the raw lead field is unknown - and the line says where
    with pytest.raises(ConfigError, match=r"rules.yaml:5: rule 'big' names field 'company_size'"):
        load_ruleset(path, events=events, features=frame)
    with pytest.raises(ConfigError, match=r"rules.yaml:2: .*'site_visit'"):
        load_ruleset(path, leads=contract_leads(), events=events.assign(event_type="x"))


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_rules(tmp_path / "rules.yaml")
    (tmp_path / "rules.yaml").write_text("# nothing yet\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="empty"):
        load_rules(tmp_path / "rules.yaml")


def test_without_a_vocabulary_only_the_format_is_checked():
    assert parse_rules_text(TYPO).names == ["site visit", "price list"]


# --------------------------------------------------------------------------- round trip


def simulated_inputs(rs: RuleSet, n_leads: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Raw rule inputs (counts for event rules, 0/1 for fields, steps for decay) and labels
    that follow the manual points loosely."""
    rng = np.random.default_rng(seed)
    n = 2 * n_leads
    cols = {}
    for r in rs.rules:
        if r.kind == "event":
            v = rng.poisson(0.6, n).astype(float)
            cols[r.name] = np.minimum(v, r.cap) if r.cap else v
        elif r.kind == "field":
            cols[r.name] = rng.binomial(1, 0.25, n).astype(float)
        else:
            cols[r.name] = rng.integers(0, 3, n).astype(float)
    x = pd.DataFrame({"lead_id": np.repeat(np.arange(n_leads).astype(str), 2),
                      "as_of": pd.Timestamp("2025-01-01"), **cols})
    logit = -2.5 + x[rs.names].to_numpy() @ (rs.points / 25)
    return x, rng.binomial(1, 1 / (1 + np.exp(-logit)))


def test_rules_yaml_to_learned_yaml_and_back(tmp_path):
    rs = load_rules(ROOT / "rules.yaml")
    x, y = simulated_inputs(rs, 1500, seed=4)
    train = x["lead_id"].astype(int) < 1000
    lp = learn_points(x[train], y[train], rs, LearnSettings(n_bootstrap=20))
    temperature = BandSet(name="temperature", policy="conversion", min_band_size=20, bands=(
        BandSpec("cold"), BandSpec("warm", "min_conversion", 0.15),
        BandSpec("hot", "min_conversion", 0.4)))
    suggested = learned_ruleset(rs, lp, x[~train], y[~train], {"temperature": temperature})

    path = write_rules(tmp_path / "rules.learned.yaml", suggested, lp,
                       header="Suggested points\nlearned from the training split")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Suggested points\n# learned from the training split\n")
    assert "points double the odds" in text
    assert "# manual 20 -> learned" in text  # per-rule comment before the price-list rule
    loaded = load_rules(path, vocab())
    assert loaded == suggested
    assert loaded.names == rs.names
    assert [b.set_name for b in loaded.bands] == ["temperature", "lifecycle"]
    # the learned file is itself a valid manual rule set: dumping it again is stable
    assert parse_rules_text(dump_rules(loaded)) == loaded
    for rule, learned in zip(loaded.rules, lp.points, strict=True):
        if np.isfinite(learned):
            assert rule.points == round(learned)


def test_rules_an_export_cannot_score_are_left_out_with_the_line(tmp_path: Path) -> None:
    from pipeline.rules_config import load_applicable_ruleset

    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n"
        "  - {name: site visit, event: site_visit, points: 1}\n"
        "  - {name: big company, field: employees, range: [200, null], points: 10}\n"
        "  - {name: webinar, event: webinar_attended, points: 5}\n", encoding="utf-8")
    events = pd.DataFrame({"lead_id": ["a"], "timestamp": pd.to_datetime(["2025-01-01"]),
                           "event_type": ["site_visit"]})
    leads = contract_leads().drop(columns=["budget"])
    ruleset, left_out = load_applicable_ruleset(path, leads=leads, events=events)
    assert ruleset.names == ["site visit"]
    assert len(left_out) == 2
    assert left_out[0].startswith(f"{path}:3: rule 'big company' names field 'employees'")
    assert left_out[1].startswith(f"{path}:4: rule 'webinar' names event type")
    assert all(m.endswith("the rule is left out") for m in left_out)
    with pytest.raises(ConfigError):  # a file that fits stays strict with load_ruleset
        load_ruleset(path, leads=leads, events=events)
