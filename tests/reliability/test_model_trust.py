"""Trust boundary for models ([2.8] 9): a model outside the configured MLflow store is
refused before anything in it is unpickled, unless `--trust-model`.

The crafted model is an MLflow pyfunc folder whose `python_model.pkl` writes a marker file
when unpickled (as a malicious one would run `os.system`).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import model_store, tracking
from pipeline.cli import app
from pipeline.errors import ConfigError


class _Planted:
    """Unpickling this runs `exec`, which writes the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


@pytest.fixture
def crafted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(model folder, marker path): a real pyfunc folder with its pickle replaced."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    ml = tracking.mlflow()

    class Plain(ml.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
            return model_input

    folder = tmp_path / "model"
    ml.pyfunc.save_model(str(folder), python_model=Plain(), pip_requirements=[])
    marker = tmp_path / "marker.txt"
    pkl = folder / "python_model.pkl"
    assert pkl.is_file()
    pkl.write_bytes(pickle.dumps(_Planted(marker)))
    return folder, marker


def test_a_local_folder_is_refused_before_unpickling(crafted: tuple[Path, Path]) -> None:
    folder, marker = crafted
    with pytest.raises(ConfigError) as err:
        model_store.load_model(str(folder))
    assert not marker.exists()
    text = str(err.value)
    assert "--trust-model" in text
    assert str(folder / "python_model.pkl") in text  # says what it would unpickle
    assert "not in the configured MLflow store" in text


def test_with_trust_the_check_lets_it_load(crafted: tuple[Path, Path]) -> None:
    folder, marker = crafted
    with pytest.raises(ConfigError):  # it unpickles, then is found not to be a leadprop model
        model_store.load_model(str(folder), trust=True)
    assert marker.read_text() == "ran"


def test_score_refuses_the_folder_before_reading_anything(crafted: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    folder, marker = crafted
    shipped = Path(__file__).resolve().parents[2] / "params.yaml"
    (tmp_path / "params.yaml").write_text(shipped.read_text(encoding="utf-8"), encoding="utf-8")
    # No leads file exists: the trust check must fire before the inputs are looked at.
    result = CliRunner().invoke(app, ["score", "--params", str(tmp_path / "params.yaml"),
                                      "--leads", str(tmp_path / "nope.csv"),
                                      "--model", str(folder)])
    assert result.exit_code == 2, result.output
    assert "--trust-model" in result.output and "Traceback" not in result.output
    assert not marker.exists()


@pytest.mark.parametrize("uri", ["file:///srv/models/m", "s3://bucket/model",
                                 "https://example.com/model.tar.gz",
                                 "models://profile@databricks/lead-propensity/1"])
def test_foreign_uris_need_trust(uri: str) -> None:
    with pytest.raises(ConfigError, match="--trust-model"):
        model_store.check_trusted(uri, trust=False)
    model_store.check_trusted(uri, trust=True)  # no error


@pytest.mark.parametrize("uri", ["models:/lead-propensity@champion", "models:/lead-propensity/3",
                                 "models:/m-0123abcd", "runs:/0123abcd/model"])
def test_store_uris_load_without_asking(uri: str) -> None:
    model_store.check_trusted(uri, trust=False)
