"""Model URIs -> registry versions, the trust rule, and the per-source namespaces (registry
name, default model URI, score history file and table)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline import scoring_io
from pipeline.errors import ConfigError
from pipeline.model_store import ModelRef, is_store_uri, lineage, resolve_model
from pipeline.settings import default_model_name, source_key


class FakeClient:
    def get_model_version_by_alias(self, name, alias):  # noqa: ANN001, ANN201
        assert (name, alias) == ("lead-propensity-crm", "champion")
        return SimpleNamespace(version=4, run_id="r4")

    def get_model_version(self, name, version):  # noqa: ANN001, ANN201
        return SimpleNamespace(version=int(version), run_id=f"r{version}")


def test_an_alias_is_resolved_to_the_version_that_scores():
    ref = resolve_model("models:/lead-propensity-crm@champion", FakeClient())
    assert ref == ModelRef("models:/lead-propensity-crm@champion",
                           "models:/lead-propensity-crm/4", "lead-propensity-crm", "4", "r4")
    assert resolve_model("models:/m/2", FakeClient()).run_id == "r2"
    assert resolve_model("runs:/abc/model", FakeClient()) == ModelRef(
        "runs:/abc/model", "runs:/abc/model", None, "abc", "abc")
    assert resolve_model("/srv/model", FakeClient()).version == "/srv/model"


def test_store_uris_and_the_rest():
    assert is_store_uri("models:/lead-propensity@champion") and is_store_uri("runs:/x/model")
    for uri in ("/srv/model", "model", "file:///srv/m", "s3://b/m", "models://p@host/m/1"):
        assert not is_store_uri(uri), uri


@pytest.mark.parametrize(("source", "key", "name"), [
    ("synthetic", "synthetic", "lead-propensity"),
    (None, "synthetic", "lead-propensity"),
    ("sources/xeducation.yaml", "xeducation", "lead-propensity-xeducation"),
    ("/abs/My CRM (2025).yml", "my-crm-2025", "lead-propensity-my-crm-2025"),
])
def test_source_namespaces(source, key, name):
    assert source_key(source) == key
    assert default_model_name(source) == name


def test_history_is_keyed_by_source():
    assert scoring_io.default_out("data/scored", "synthetic") == Path("data/scored/scored_leads")
    assert scoring_io.default_out("data/scored", "crm") == Path("data/scored/crm/scored_leads")
    assert scoring_io.default_table("synthetic") == "scored_leads"
    assert scoring_io.default_table("my-crm-2025") == "scored_leads_my_crm_2025"
    long = scoring_io.default_table("x" * 80)
    assert len(long) == 48 and scoring_io.check_table_name(long) == long


def test_lineage_is_the_registered_name():
    assert lineage(ModelRef("models:/a@champion", "models:/a/1", "a", "1")) == "a"
    assert lineage(ModelRef("/srv/m", "/srv/m", None, "/srv/m")) == "unregistered:/srv/m"


def test_explicit_names_win_and_bad_ones_are_refused():
    import yaml

    from pipeline.settings import parse_params

    shipped = yaml.safe_load((Path(__file__).resolve().parents[3] / "params.yaml").read_text())
    split = {k: shipped[k] for k in ("split", "train", "calibration", "bands")}
    raw = {**split, "source": "sources/crm.yaml", "register": {"model_name": "mine"}}
    params = parse_params(raw)
    assert params.register.model_name == "mine" and params.score.model == "models:/mine@champion"
    assert parse_params({**raw, "score": {"model": "models:/x/3"}}).score.model == "models:/x/3"
    with pytest.raises(ConfigError, match="register.model_name"):
        parse_params({**split, "register": {"model_name": 3}})
