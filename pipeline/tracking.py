"""MLflow: the one module that imports it. Tracking URI, run tags, registry aliases.

Default store is the embedded `sqlite:///mlflow.db` in the working directory, overridden
by the `MLFLOW_TRACKING_URI` environment variable. Nothing happens at import time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import subprocess
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.io import process_alive

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
TRAINING_EXPERIMENT = "lead-propensity-training"
SCORING_EXPERIMENT = "lead-propensity-scoring"
#: Tags on every run a stage opens (`start_run`): which process on which machine holds it.
PID_TAG = "leadprop.pid"
HOST_TAG = "leadprop.host"
CLOSED_TAG = "leadprop.closed"


def mlflow():  # noqa: ANN201 - the module itself
    """Import MLflow lazily (it is slow to import and configures loggers)."""
    warnings.filterwarnings("ignore", module="mlflow")
    import mlflow as _mlflow

    return _mlflow


def configure() -> str:
    """Point MLflow at the configured store and return its URI."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    ml = mlflow()
    ml.set_tracking_uri(uri)
    # Only an explicitly configured registry differs from the tracking store. (MLflow's
    # set_registry_uri also exports MLFLOW_REGISTRY_URI, so it must not be read back here.)
    ml.set_registry_uri(uri)
    for name in ("mlflow", "alembic", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return uri


def git_commit(cwd: Path | None = None) -> str:
    """The current git commit (`-dirty` when the work tree has changes); 'unknown' outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def file_hash(paths: Iterable[Path]) -> str:
    """sha256 over the bytes of the given files (in the given order); 12 hex chars.

    Content only: a renamed copy of a file has the same hash (a missing file counts as
    empty, separated from its neighbours so that moving bytes between files changes it).
    """
    digest = hashlib.sha256()
    for path in paths:
        path = Path(path)
        digest.update(b"\x00file\x00")
        if not path.exists():
            continue
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


def close_stale_runs(experiment_id: str) -> list[str]:
    """Mark FAILED the RUNNING runs of this experiment whose process is gone (a killed
    stage): runs tagged with this machine's name (`HOST_TAG`) and a pid (`PID_TAG`) that no
    longer exists. Runs of other machines, of live processes and untagged runs are left
    alone. Returns the ids closed."""
    ml = mlflow()
    client = ml.MlflowClient()
    host = socket.gethostname()
    try:
        runs = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'",
                                  max_results=1000)
    except Exception as err:  # noqa: BLE001 - a store that cannot search must not block a stage
        log.debug("cannot look for stale runs in experiment %s: %s", experiment_id, err)
        return []
    closed = []
    for run in runs:
        tags = run.data.tags
        pid = tags.get(PID_TAG, "")
        if tags.get(HOST_TAG) != host or not pid.isdigit():
            continue
        if int(pid) == os.getpid() or process_alive(int(pid)):
            continue
        client.set_tag(run.info.run_id, CLOSED_TAG,
                       f"process {pid} on {host} ended without closing the run (killed)")
        client.set_terminated(run.info.run_id, status="FAILED")
        closed.append(run.info.run_id)
    if closed:
        log.warning("MLflow: %d run(s) left RUNNING by a killed stage marked FAILED: %s",
                    len(closed), ", ".join(closed))
    return closed


@contextmanager
def start_run(experiment: str | None = None, **kwargs: Any) -> Iterator[Any]:
    """`mlflow.start_run(**kwargs)` for a stage: tags the run with this process's pid and
    host (`PID_TAG`, `HOST_TAG`), so a kill can be recognised later, then closes the stale
    RUNNING runs of the same experiment (`close_stale_runs`). `experiment` is set first when
    given; with `run_id=` the run's own experiment is used. The run ends FAILED on any
    exception, including KeyboardInterrupt and SystemExit (SIGTERM, see
    `pipeline.io.terminate_on_sigterm`)."""
    ml = mlflow()
    if experiment is not None and not kwargs.get("run_id"):
        ml.set_experiment(experiment)
    with ml.start_run(**kwargs) as run:
        ml.set_tags({PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()})
        close_stale_runs(run.info.experiment_id)
        yield run


def log_params(params: Mapping[str, Any]) -> None:
    """Log a flat mapping of params in batches (MLflow caps values at 6000 chars)."""
    ml = mlflow()
    items = {k: str(v)[:6000] for k, v in params.items()}
    keys = sorted(items)
    for start in range(0, len(keys), 90):
        ml.log_params({k: items[k] for k in keys[start : start + 90]})


def registered_version(client: Any, name: str, alias: str) -> Any | None:
    """The model version behind `name@alias`, or None when the alias is not set."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except Exception:  # noqa: BLE001 - MLflow raises MlflowException for a missing alias/model
        return None


def log_bundle_model(bundle_path: Path, registered_model_name: str | None = None) -> Any:
    """Log the scoring bundle (features list + model + calibrator + bands) as one pyfunc
    model in the active run, optionally registering it; returns MLflow's ModelInfo.

    The model takes raw leads (+ events) and `as_of` (`pipeline.pyfunc_model`): its
    signature and input example come from the bundle's `metadata["input_contract"]`,
    recorded by the train stage."""
    ml = mlflow()
    import joblib

    from pipeline import pyfunc_model

    bundle = joblib.load(bundle_path)
    contract = (getattr(bundle, "metadata", None) or {}).get("input_contract")
    if not contract:
        from pipeline.errors import ConfigError

        raise ConfigError(f"{bundle_path}: the bundle records no input contract (it was "
                          "trained by an older leadprop); run `leadprop train` again")
    example = contract["example"]
    output = pyfunc_model.score_raw(bundle, example)
    with pyfunc_model.code_paths() as code:
        return ml.pyfunc.log_model(
            name="model",
            python_model=pyfunc_model.LeadPropensityModel(),
            artifacts={"bundle": str(bundle_path)},
            code_paths=code,
            signature=pyfunc_model.model_signature(bundle, example, output),
            input_example=example,
            registered_model_name=registered_model_name,
            pip_requirements=_pip_requirements(),
        )


def _pip_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in ("pandas", "numpy", "scikit-learn", "lightgbm", "pyarrow", "mlflow", "pandera",
                "joblib"):
        try:
            reqs.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            continue
    return reqs
