"""Hostile YAML: a `!!python` tag in params.yaml, rules.yaml or a source config is a
ConfigError, never code."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.rules_config import load_rules
from pipeline.settings import load_params
from pipeline.sources import load_source

TAGGED = "seed: !!python/object/apply:os.system ['touch {marker}']\n"


@pytest.mark.parametrize("loader", [load_params, load_source, load_rules],
                         ids=["params.yaml", "source config", "rules.yaml"])
def test_python_tag_is_config_error_and_never_runs(tmp_path: Path, loader) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "hostile.yaml"
    path.write_text(TAGGED.format(marker=marker), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        loader(path)
    assert str(path) in str(info.value)
    assert "line 1" in str(info.value)
    assert not marker.exists()
