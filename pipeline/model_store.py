"""Where scoring models come from: resolve a model URI to a registry version and load the
scoring bundle inside it.

`resolve_model` turns `models:/name@alias` into the version it points at (so the version
recorded is the one that scored); `load_model` loads the MLflow pyfunc and checks it is a
leadprop model.

Trust boundary: loading a model unpickles it (MLflow's `python_model.pkl`, the bundle's
joblib file), and unpickling runs whatever code the file says. `models:/...` and
`runs:/...` URIs resolve in the configured MLflow store (the one `leadprop register` writes
to) and load without asking; anything else (a local folder, `file:`, `s3://`, `http(s)://`,
`models://<profile>@<host>/...`) is refused by `check_trusted` *before* anything is read
unless the caller passes `trust=True` (`leadprop score --trust-model`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import tracking
from pipeline.errors import ConfigError


@dataclass(frozen=True)
class ModelRef:
    """Which model scored: the URI asked for, the one loaded, registry name and version."""

    uri: str
    loaded_uri: str
    name: str | None
    version: str
    run_id: str | None = None


_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<suffix>[^/]+))?/?$")
_RUNS_URI = re.compile(r"^runs:/(?P<run_id>[^/]+)(?:/.*)?$")


def resolve_model(uri: str, client: Any) -> ModelRef:
    """Registry look-up: `models:/name@alias` -> its version (loaded as models:/name/<v>),
    `models:/name/<v>` checked; `runs:/<id>/...` -> the run id; a path -> the path."""
    m = _MODELS_URI.match(uri)
    if m and m["alias"]:
        mv = client.get_model_version_by_alias(m["name"], m["alias"])
        return ModelRef(uri, f"models:/{m['name']}/{mv.version}", m["name"], str(mv.version),
                        mv.run_id)
    if m and m["suffix"] and m["suffix"].isdigit():
        mv = client.get_model_version(m["name"], m["suffix"])
        return ModelRef(uri, uri, m["name"], str(mv.version), mv.run_id)
    if m and m["suffix"]:  # a stage or "latest": recorded as asked
        return ModelRef(uri, uri, m["name"], m["suffix"])
    if m:  # models:/<model id> (MLflow 3 logged model)
        return ModelRef(uri, uri, None, m["name"])
    r = _RUNS_URI.match(uri)
    if r:
        return ModelRef(uri, uri, None, r["run_id"], r["run_id"])
    return ModelRef(uri, uri, None, uri)


def store_uri() -> str:
    """The configured MLflow store (what `tracking.configure` will point MLflow at)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or tracking.DEFAULT_TRACKING_URI


def is_store_uri(uri: str) -> bool:
    """True for a URI resolved in the configured MLflow store: `models:/name@alias`,
    `models:/name/<version>`, `models:/<model id>` or `runs:/<run id>/...`."""
    return bool(_MODELS_URI.match(uri) or _RUNS_URI.match(uri))


def pickled_files(uri: str) -> list[str]:
    """What loading `uri` would unpickle, for the refusal message: the pickle / joblib
    files of a local model folder (their names only are read), else a description."""
    folder = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
    if folder.is_dir():  # an MLflow model folder: its files and artifacts/<file> (no deeper)
        found = sorted(str(p) for pattern in ("*", "*/*") for p in folder.glob(pattern)
                       if p.suffix in (".pkl", ".pickle", ".joblib", ".cloudpickle"))
        return found or [f"{folder}/python_model.pkl (the pyfunc loader's pickle)"]
    return [f"the python_model.pkl and artifacts (the scoring bundle's joblib) at {uri}"]


def check_trusted(uri: str, trust: bool) -> None:
    """ConfigError unless `uri` is in the configured MLflow store or `trust` is set; called
    before anything is downloaded or unpickled."""
    if trust or is_store_uri(uri):
        return
    files = pickled_files(uri)
    shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    raise ConfigError(
        f"model {uri!r} is not in the configured MLflow store ({store_uri()}): loading it "
        f"would unpickle {shown}, and unpickling runs any code the file holds. Score with a "
        "registered model (models:/<name>@champion, `leadprop register`), or pass "
        "--trust-model if you trust whoever wrote these files."
    )


def load_model(uri: str, *, trust: bool = False) -> tuple[Any, ModelRef]:
    """(scoring bundle, model reference) for an MLflow model URI or a local model folder.

    ConfigError when the URI is outside the configured store and not trusted
    (`check_trusted`, before anything is read), cannot be resolved or loaded, or is not a
    leadprop model.
    """
    check_trusted(uri, trust)
    ml = tracking.mlflow()
    try:
        ref = resolve_model(uri, ml.MlflowClient())
        pyfunc = ml.pyfunc.load_model(ref.loaded_uri)
        python_model = pyfunc.unwrap_python_model()
    except Exception as err:  # noqa: BLE001 - MLflow raises many types for a missing model
        raise ConfigError(
            f"model {uri!r} cannot be loaded ({type(err).__name__}: {_first_line(err)}). "
            "Check `score.model` or `--model`: a registered model with an alias such as "
            "models:/lead-propensity@champion (run `leadprop register` first), "
            "models:/<name>/<version>, runs:/<run_id>/model or (with --trust-model) a local model "
            "folder; the "
            f"MLflow store is {tracking.mlflow().get_tracking_uri()}."
        ) from None
    bundle = getattr(python_model, "bundle", None)
    if bundle is None or not all(hasattr(bundle, a) for a in ("features", "score_frame",
                                                              "bands")):
        raise ConfigError(f"model {uri!r} is not a leadprop lead-propensity model (no scoring "
                          "bundle inside); point `--model` at one logged by `leadprop register`.")
    if ref.run_id is None:
        ref = ModelRef(ref.uri, ref.loaded_uri, ref.name, ref.version,
                       getattr(pyfunc.metadata, "run_id", None))
    return bundle, ref


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# ----------------------------------------------------------------------------- lineage

_BATCH_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def lineage(ref: ModelRef) -> str:
    """A model's lineage: its registered name (each source has its own,
    `pipeline.settings.default_model_name`), or `unregistered:<uri>` for a model outside the
    registry."""
    return ref.name or f"unregistered:{ref.uri}"


def batch_lineage(batch_id: str) -> str | None:
    """The lineage of the model that scored `batch_id`, from its scoring run's tags in the
    configured MLflow store (`model_name`, `model_uri`); None when no such run is found."""
    if not _BATCH_ID.match(batch_id):
        return None
    ml = tracking.mlflow()
    client = ml.MlflowClient()
    try:
        exp = client.get_experiment_by_name(tracking.SCORING_EXPERIMENT)
        if exp is None:
            return None
        runs = client.search_runs([exp.experiment_id],
                                  filter_string=f"tags.batch_id = '{batch_id}'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
    except Exception:  # noqa: BLE001 - a store that cannot search: lineage unknown
        return None
    if not runs:
        return None
    tags = runs[0].data.tags
    name = tags.get("model_name")
    if not name:
        return None
    return name if name != "unregistered" else f"unregistered:{tags.get('model_uri', '')}"


def same_lineage(previous_batch_id: str, ref: ModelRef) -> bool:
    """False when the previous batch was scored by a model of another lineage (so its bands
    must not be compared with this model's); True when it is the same or unknown."""
    before = batch_lineage(previous_batch_id)
    return before is None or before == lineage(ref)
