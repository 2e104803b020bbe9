"""MLflow: the one module that imports it. Tracking URI, run tags, registry aliases.

Default store is the embedded `sqlite:///mlflow.db` in the working directory, overridden
by the `MLFLOW_TRACKING_URI` environment variable. Nothing happens at import time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
TRAINING_EXPERIMENT = "lead-propensity-training"
SCORING_EXPERIMENT = "lead-propensity-scoring"


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
    """sha256 over the bytes of the given files (in the given order); 12 hex chars."""
    digest = hashlib.sha256()
    for path in paths:
        path = Path(path)
        if not path.exists():
            continue
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


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


def log_bundle_model(
    bundle_path: Path,
    input_example: Any,
    output_example: Any,
    registered_model_name: str | None = None,
) -> Any:
    """Log the scoring bundle (features list + model + calibrator + bands) as one pyfunc
    model in the active run, optionally registering it; returns MLflow's ModelInfo."""
    ml = mlflow()
    from mlflow.models import infer_signature

    from pipeline.pyfunc_model import LeadPropensityModel

    project_root = Path(__file__).resolve().parent.parent
    return ml.pyfunc.log_model(
        name="model",
        python_model=LeadPropensityModel(),
        artifacts={"bundle": str(bundle_path)},
        code_paths=[
            str(project_root / "models"),
            str(project_root / "pipeline" / "pyfunc_model.py"),
        ],
        signature=infer_signature(input_example, output_example),
        input_example=input_example,
        registered_model_name=registered_model_name,
        pip_requirements=_pip_requirements(),
    )


def _pip_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in ("pandas", "numpy", "scikit-learn", "lightgbm", "pyarrow", "mlflow"):
        try:
            reqs.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            continue
    return reqs
