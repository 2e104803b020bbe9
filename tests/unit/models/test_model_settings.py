"""Settings parsing for split / train / calibration / bands: values and error messages."""

from __future__ import annotations

import pytest

from models.settings import (
    BandSet,
    BandSpec,
    SettingsError,
    parse_band_set,
    parse_bands,
    parse_calibration,
    parse_split,
    parse_train,
)

BANDS = {
    "temperature": {
        "policy": "conversion",
        "bands": [
            {"name": "cold"},
            {"name": "warm", "min_conversion": 0.15},
            {"name": "hot", "min_conversion": 0.50},
        ],
    },
    "lifecycle": {
        "policy": "capacity",
        "scoring_cadence_days": 7,
        "bands": [
            {"name": "lead"},
            {"name": "MQL", "min_conversion": 0.10},
            {"name": "SQL", "capacity_per_week": 150},
        ],
    },
}

TRAIN = {
    "seed": 42,
    "validation_fraction": 0.15,
    "early_stopping_rounds": 100,
    "min_positives": 50,
    "min_calibration_positives": 20,
    "lightgbm": {"n_estimators": 2000, "learning_rate": 0.03, "num_leaves": 31},
    "logreg": {"C": 0.1},
}


def test_parse_bands_mixed_policies():
    sets = parse_bands(BANDS)
    temp, life = sets["temperature"], sets["lifecycle"]
    assert temp.band_names == ("cold", "warm", "hot")
    assert temp.bands[2] == BandSpec("hot", "min_conversion", 0.5)
    assert temp.min_band_size == 30 and temp.conversion_rule == "band"
    assert life.bands[1] == BandSpec("MQL", "min_conversion", 0.1)
    assert life.bands[2] == BandSpec("SQL", "capacity_per_week", 150.0)
    assert life.uses_capacity and not temp.uses_capacity


def test_generic_target_is_read_with_the_set_policy():
    bs = parse_band_set(
        "t", {"policy": "share", "bands": [{"name": "a"}, {"name": "b", "target": 0.2}]}
    )
    assert bs.bands[1] == BandSpec("b", "top_share", 0.2)


@pytest.mark.parametrize(
    ("band", "message"),
    [
        (
            {"name": "hot", "min_conversion": 1.5},
            "`bands.temperature.bands[2].min_conversion` must be in (0, 1); got 1.5",
        ),
        ({"name": "hot"}, "`bands.temperature.bands[2]` (hot) needs one of"),
        (
            {"name": "hot", "min_conversion": 0.5, "top_share": 0.1},
            "`bands.temperature.bands[2]` (hot) must have one target",
        ),
        (
            {"name": "hot", "min_conversion": 0.1},
            "`bands.temperature.bands[2].min_conversion` must be > "
            "`bands.temperature.bands[1].min_conversion`",
        ),
        ({"name": "hot", "min_conv": 0.5}, "unknown key(s) `min_conv`"),
    ],
)
def test_band_errors_name_the_key(band, message):
    mapping = {
        "policy": "conversion",
        "bands": [{"name": "cold"}, {"name": "warm", "min_conversion": 0.15}, band],
    }
    with pytest.raises(SettingsError) as err:
        parse_band_set("temperature", mapping)
    assert message in str(err.value)


def test_lowest_band_cannot_have_a_target_and_shares_must_leave_room():
    with pytest.raises(SettingsError, match="lowest band"):
        parse_band_set(
            "t",
            {"bands": [{"name": "a", "min_conversion": 0.1}, {"name": "b", "min_conversion": 0.2}]},
        )
    with pytest.raises(
        SettingsError, match="must sum to < 1 so the lowest band keeps some leads; got 1"
    ):
        parse_band_set(
            "t",
            {
                "policy": "share",
                "bands": [
                    {"name": "a"},
                    {"name": "b", "top_share": 0.6},
                    {"name": "c", "top_share": 0.4},
                ],
            },
        )
    with pytest.raises(SettingsError, match="names must be unique"):
        BandSet("t", "share", (BandSpec("a"), BandSpec("a", "top_share", 0.1)))


def test_parse_train_and_errors():
    t = parse_train(TRAIN)
    assert t.seed == 42 and t.lightgbm.learning_rate == 0.03 and t.logreg.C == 0.1
    assert t.lightgbm.to_lgbm_kwargs()["n_estimators"] == 2000
    bad = {**TRAIN, "lightgbm": {"learning_rate": -1}}
    with pytest.raises(SettingsError) as err:
        parse_train(bad)
    assert str(err.value) == "`train.lightgbm.learning_rate` must be > 0; got -1"
    with pytest.raises(SettingsError, match="unknown key"):
        parse_train({**TRAIN, "lightgbm": {"num_leave": 3}})
    with pytest.raises(SettingsError, match=r"`train.validation_fraction` must be in \(0, 1\)"):
        parse_train({**TRAIN, "validation_fraction": 1.0})


def test_parse_split_and_calibration():
    assert parse_split({"train": 0.6, "calibration": 0.2, "test": 0.2}).fractions == (0.6, 0.2, 0.2)
    with pytest.raises(SettingsError, match="must sum to 1; got 1.1"):
        parse_split({"train": 0.7, "calibration": 0.2, "test": 0.2})
    assert parse_calibration({"method": "auto"}).method == "auto"
    with pytest.raises(SettingsError, match="`calibration.method` must be one of"):
        parse_calibration({"method": "beta"})
