"""`register` stage: log the scoring bundle as one MLflow pyfunc model, register it as
`register.model_name` (per source: `lead-propensity-<source>`, see `pipeline.settings`)
with alias `challenger`, and promote it to `champion` only if it is at least as good as the
current champion on the current test split. The gate fails closed:

- **identical model**: a version with the same data, params and code hashes (recorded as
  tags `leadprop.data_hash` / `.params_hash` / `.code_hash` at registration) exists: no new
  version is registered and no alias moves.
- **no champion yet**: the challenger is promoted.
- **champion evaluated**: both models score the same test snapshots; promoted when test
  log-loss is no worse and ROC AUC no more than `register.auc_tolerance` below.
- **champion cannot be evaluated** (it needs columns this split lacks, or was trained on
  another source): the challenger stays challenger; the reason says how to promote it by
  hand (`leadprop promote VERSION --reason ...`).
- **champion fails to load or score**: reported as an error, naming the last good version
  (the latest earlier champion that still scores this split, `leadprop rollback` target);
  the challenger stays challenger.

Every change of the `champion` alias (here, `leadprop promote`, `leadprop rollback`) is
written to the new champion's model-version tags (`leadprop.champion_*`: when, who, how,
why, the previous champion) and the old one gets `leadprop.champion_until`, so the alias
history can be read back from the registry. The decision and its reason go to the training
run (`registry_decision.json`) and to `reports/registry.json`.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from features.pii import personal_kind, personal_levels
from models.bundle import ScoringBundle, model_input
from models.metrics import log_loss, roc_auc
from pipeline import tracking
from pipeline.errors import ConfigError, DataError, LeadpropError
from pipeline.io import check_manifest, kill_point, read_json, require_unit, write_json

log = logging.getLogger(__name__)

REPORT_FILE = "registry.json"
HASH_TAGS = ("data_hash", "params_hash", "code_hash")
TAG = "leadprop."
#: params sections that do not change the fitted model (left out of `params_hash`).
NOT_MODEL_SECTIONS = ("paths", "register", "score", "rules")
#: The code a fitted bundle depends on (hashed into `code_hash`).
CODE_PATHS = ("features", "models", "pipeline/stages/train.py", "pipeline/pyfunc_model.py")
#: Earlier champions tried when looking for the last good version.
LAST_GOOD_TRIES = 3


def decide(
    challenger: dict[str, float], champion: dict[str, float] | None, auc_tolerance: float
) -> tuple[bool, str]:
    """(promote?, why) from test log-loss and ROC AUC of both models."""
    if champion is None:
        return True, "no champion yet"
    worse_loss = challenger["log_loss"] > champion["log_loss"] + 1e-12
    worse_auc = challenger["roc_auc"] < champion["roc_auc"] - auc_tolerance
    if worse_loss or worse_auc:
        why = []
        if worse_loss:
            why.append(
                f"log-loss {challenger['log_loss']:.4f} > champion {champion['log_loss']:.4f}"
            )
        if worse_auc:
            why.append(
                f"ROC AUC {challenger['roc_auc']:.4f} < champion {champion['roc_auc']:.4f}"
                f" - tolerance {auc_tolerance}"
            )
        return False, "; ".join(why)
    return True, (
        f"log-loss {challenger['log_loss']:.4f} <= {champion['log_loss']:.4f} and ROC AUC "
        f"{challenger['roc_auc']:.4f} within {auc_tolerance} of {champion['roc_auc']:.4f}"
    )


def refuse_personal(bundle: ScoringBundle, example: pd.DataFrame, file: str) -> None:
    """DataError when a feature's category levels (pickled with the model) or the input
    example hold emails, phones or person names: such a model must not reach the registry.
    Ingest refuses those columns already; this is the last line."""
    found = [(col, kind) for col, levels in bundle.categories.items()
             if (kind := personal_levels(levels)) is not None]
    found += [(col, hit.kind) for col in example.columns if col not in bundle.categories
              and (hit := personal_kind(example[col], col)) is not None]
    if found:
        shown = ", ".join(f"{col} ({kind})" for col, kind in found[:5])
        raise DataError(
            f"{file}: the model's features hold personal data: {shown}. It is not registered. "
            "Re-run ingest (which refuses such columns; set `ingest.personal_data` to drop or "
            "hash them) and train again, or add the source columns to `features.exclude`.",
            file=file, column=found[0][0], n_rows=len(found),
        )


def _scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {"log_loss": log_loss(y, p), "roc_auc": roc_auc(y, p)}


# ----------------------------------------------------------------------------- hashes


def params_hash(raw: dict[str, Any]) -> str:
    """12 hex chars over the params sections that shape the model (all but
    `NOT_MODEL_SECTIONS`), key order independent."""
    shaping = {k: v for k, v in raw.items() if k not in NOT_MODEL_SECTIONS}
    text = json.dumps(shaping, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def code_hash(root: Path) -> str:
    """12 hex chars over the Python files of `CODE_PATHS` (sorted by path)."""
    files: list[Path] = []
    for rel in CODE_PATHS:
        path = root / rel
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(tracking.file_hash([path]).encode())
    return digest.hexdigest()[:12]


def model_hashes(params: Any, run_info: dict[str, Any], features_file: Path) -> dict[str, str]:
    """data / params / code hashes of the model in `paths.models`: the data hash is train's
    (the interim tables it read, `run.json`), else the feature table's."""
    root = Path(__file__).resolve().parents[2]
    return {
        "data_hash": str(run_info.get("data_hash") or tracking.file_hash([features_file])),
        "params_hash": params_hash(dict(params.raw)),
        "code_hash": code_hash(root),
    }


def find_identical(client: Any, name: str, hashes: dict[str, str]) -> Any | None:
    """The registered version of `name` whose three hash tags equal `hashes`, or None."""
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except Exception:  # noqa: BLE001 - no such registered model yet
        return None
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        if all(mv.tags.get(f"{TAG}{k}") == v for k, v in hashes.items()):
            return mv
    return None


# ------------------------------------------------------------------------ the champion


@dataclass(frozen=True)
class ChampionCheck:
    """The champion on this split: `status` is 'absent', 'ok' (with `scores`),
    'unevaluable' (cannot be compared: columns, source) or 'failed' (load/score error)."""

    status: str
    version: str | None = None
    scores: dict[str, float] | None = None
    detail: str = ""


def score_version(name: str, version: str, test_x: pd.DataFrame, y: np.ndarray) -> ChampionCheck:
    """Load `name` version `version` from the registry and score the test split's feature
    rows with its scoring bundle (the same snapshots the challenger was scored on)."""
    from pipeline.model_store import load_model

    try:
        bundle, _ = load_model(f"models:/{name}/{version}")
    except ConfigError as err:
        return ChampionCheck("failed", version, detail=f"it cannot be loaded ({err})")
    missing = [c for c in bundle.features if c not in test_x.columns]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more"
                                          if len(missing) > 10 else "")
        return ChampionCheck("unevaluable", version, detail=(
            f"it needs {len(missing)} feature column(s) this split lacks: {shown}"))
    try:
        p = bundle.propensity(model_input(test_x, bundle.features))
        return ChampionCheck("ok", version, _scores(y, np.asarray(p, dtype=float)))
    except LeadpropError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure to score is a failed champion
        return ChampionCheck("failed", version, detail=f"it fails to score ({_brief(err)})")


def check_champion(client: Any, name: str, source: str, test_x: pd.DataFrame,
                   y: np.ndarray) -> ChampionCheck:
    """Can the current champion be compared with the challenger on this split? Only a
    registry that says "no such model / alias" means no champion; any other error reading
    it is a ConfigError (never taken as "no champion yet", which would promote)."""
    try:
        champion = client.get_model_version_by_alias(name, "champion")
    except Exception as err:  # noqa: BLE001 - MlflowException, or the store is unreachable
        code = str(getattr(err, "error_code", ""))
        if code == "RESOURCE_DOES_NOT_EXIST" or (
                code == "INVALID_PARAMETER_VALUE" and "not found" in str(err)):
            return ChampionCheck("absent")
        raise ConfigError(
            f"cannot read the champion of {name!r} from the MLflow registry "
            f"({tracking.mlflow().get_tracking_uri()}): {_brief(err)}. Nothing was "
            "registered; check MLFLOW_TRACKING_URI and that the store is reachable."
        ) from None
    version = str(champion.version)
    trained_on = champion.tags.get(f"{TAG}source")
    if trained_on and trained_on != source:
        return ChampionCheck("unevaluable", version, detail=(
            f"it was trained on source {trained_on!r} and this split is from {source!r}"))
    return score_version(name, version, test_x, y)


def last_good_version(client: Any, name: str, failed: str, test_x: pd.DataFrame,
                      y: np.ndarray) -> str | None:
    """The latest earlier champion (following `leadprop.champion_previous` from the failed
    one) that still scores this split, trying at most `LAST_GOOD_TRIES`; None without one."""
    seen, current = {failed}, failed
    for _ in range(LAST_GOOD_TRIES):
        try:
            previous = client.get_model_version(name, current).tags.get(
                f"{TAG}champion_previous")
        except Exception:  # noqa: BLE001 - a deleted version ends the chain
            return None
        if not previous or previous in seen:
            return None
        seen.add(previous)
        if score_version(name, previous, test_x, y).status == "ok":
            return previous
        current = previous
    return None


# -------------------------------------------------------------------- alias history


def who() -> str:
    """The user running the command (for the alias history)."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (containers)
        return "unknown"


def _now() -> str:
    return pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def move_champion(client: Any, name: str, version: str, *, how: str, why: str,
                  previous: str | None, keep_previous: bool = False) -> dict[str, str]:
    """Point `name@champion` at `version` and record it in the model-version tags: on the
    new champion `leadprop.champion_since/_by/_how/_why` and (unless `keep_previous`, for a
    rollback) `leadprop.champion_previous`; on the old one `leadprop.champion_until`."""
    when, by = _now(), who()
    client.set_registered_model_alias(name, "champion", version)
    tags = {"champion_since": when, "champion_by": by, "champion_how": how,
            "champion_why": why[:4000]}
    if not keep_previous:
        tags["champion_previous"] = previous or ""
    for key, value in tags.items():
        client.set_model_version_tag(name, version, f"{TAG}{key}", value)
    if previous and previous != version:
        client.set_model_version_tag(name, previous, f"{TAG}champion_until", when)
    return {"when": when, "by": by, "how": how, "why": why}


def _describe(client: Any, name: str, version: str, line: str) -> None:
    """Append one line to the model version's description (shown in the MLflow UI)."""
    mv = client.get_model_version(name, version)
    text = f"{mv.description}\n{line}" if mv.description else line
    client.update_model_version(name, version, description=text[-5000:])


def _version(client: Any, name: str, version: str) -> Any:
    try:
        return client.get_model_version(name, str(version))
    except Exception:  # noqa: BLE001 - MlflowException for an unknown model or version
        try:
            known = sorted(int(v.version) for v in
                            client.search_model_versions(f"name='{name}'"))
        except Exception:  # noqa: BLE001
            known = []
        shown = ", ".join(map(str, known)) if known else "none (run `leadprop register`)"
        raise ConfigError(
            f"registered model {name!r} has no version {version!r}; its versions: {shown}. "
            f"The MLflow store is {tracking.mlflow().get_tracking_uri()}."
        ) from None


def promote(params: Any, version: str, reason: str) -> dict[str, Any]:
    """`leadprop promote VERSION --reason ...`: make `version` the champion by hand; who,
    when and why go to its tags and description."""
    if not reason or not reason.strip():
        raise ConfigError("`leadprop promote` needs --reason: say why this version should "
                          "serve (it is recorded with your name in the registry)")
    tracking.configure()
    client = tracking.mlflow().MlflowClient()
    name = params.register.model_name
    mv = _version(client, name, version)
    current = tracking.registered_version(client, name, "champion")
    previous = str(current.version) if current is not None else None
    if previous == str(mv.version):
        log.info("%s version %s is already the champion", name, previous)
        return {"model_name": name, "champion_version": previous, "changed": False}
    record = move_champion(client, name, str(mv.version), how="manual", why=reason.strip(),
                           previous=previous)
    _describe(client, name, str(mv.version),
              f"{record['when']}: promoted to champion by hand by {record['by']} (was "
              f"{previous or 'none'}): {reason.strip()}")
    log.info("%s: version %s is now the champion (was %s)", name, mv.version, previous or "none")
    return {"model_name": name, "champion_version": str(mv.version),
            "previous_champion_version": previous, "changed": True, **record}


def rollback(params: Any, reason: str | None = None) -> dict[str, Any]:
    """`leadprop rollback`: move the champion alias back to the version that was champion
    before the current one (its `leadprop.champion_previous` tag)."""
    tracking.configure()
    client = tracking.mlflow().MlflowClient()
    name = params.register.model_name
    current = tracking.registered_version(client, name, "champion")
    if current is None:
        raise ConfigError(f"registered model {name!r} has no champion to roll back (MLflow "
                          f"store {tracking.mlflow().get_tracking_uri()})")
    previous = current.tags.get(f"{TAG}champion_previous")
    if not previous:
        raise ConfigError(
            f"{name} version {current.version} is the champion but no earlier champion is "
            "recorded in its tags (leadprop.champion_previous): there is nothing to roll "
            "back to. Pick a version yourself: `leadprop promote VERSION --reason ...`."
        )
    target = _version(client, name, previous)
    why = (reason or "").strip() or f"rollback from version {current.version}"
    record = move_champion(client, name, str(target.version), how="rollback", why=why,
                           previous=str(current.version), keep_previous=True)
    client.set_model_version_tag(name, str(current.version), f"{TAG}rolled_back",
                                 f"{record['when']} by {record['by']}: {why}"[:4000])
    _describe(client, name, str(target.version),
              f"{record['when']}: champion again by rollback from version {current.version} "
              f"by {record['by']}: {why}")
    log.warning("%s: champion rolled back from version %s to %s", name, current.version,
                target.version)
    return {"model_name": name, "champion_version": str(target.version),
            "previous_champion_version": str(current.version), "changed": True, **record}


# -------------------------------------------------------------------------- register


def _brief(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


def from_params(params: Any) -> dict:
    """CLI entry (`leadprop register`)."""
    from pipeline.stages.evaluate import EVALUATE_CHECKED, EVALUATE_MANIFEST

    mdir = Path(params.paths.models)
    # present, and written together by one `train` / `features` run (their manifests)?
    require_unit(mdir, ("bundle.joblib", "predictions.parquet", "run.json"), "train")
    features_file = Path(params.paths.features) / "train.parquet"
    require_unit(features_file.parent, (features_file.name,), "features")
    # a torn evaluate (killed between its renames) stops the registration too
    check_manifest(params.paths.reports, EVALUATE_CHECKED, stage="evaluate",
                   manifest=EVALUATE_MANIFEST)
    name = params.register.model_name
    source = params.source_key
    bundle: ScoringBundle = joblib.load(mdir / "bundle.joblib")
    predictions = pd.read_parquet(mdir / "predictions.parquet")
    features = pd.read_parquet(features_file)
    from pipeline.stages.train import with_learned_decay

    features = with_learned_decay(features, params, bundle)  # learned-decay features
    is_test = (predictions["split"] == "test").to_numpy()
    test_x, y = features.loc[is_test], predictions.loc[is_test, "label"].to_numpy()
    run_info = read_json(mdir / "run.json")
    run_id = run_info["run_id"]
    hashes = model_hashes(params, run_info, features_file)
    report = Path(params.paths.reports) / REPORT_FILE

    tracking.configure()
    ml = tracking.mlflow()
    client = ml.MlflowClient()
    base = {"model_name": name, "source": source, "run_id": run_id, "hashes": hashes}

    same = find_identical(client, name, hashes)
    resumed = None
    if same is not None and same.tags.get(f"{TAG}gate") is None:
        # registered, but the gate (aliases, then the `gate` tag, last) never finished: a
        # killed `register`; decide for that version instead of registering it again
        resumed = str(same.version)
        log.warning("%s version %s was registered by a run stopped before its gate decision; "
                    "deciding it now", name, resumed)
    elif same is not None:
        champion = tracking.registered_version(client, name, "champion")
        champion_now = str(champion.version) if champion is not None else None
        why = (f"identical to version {same.version} (same data, params and code hashes): "
               "no new version registered, aliases unchanged")
        record = {**base, "decision": "identical", "registered": False,
                  "version": str(same.version), "promoted": False, "reason": why,
                  "champion_version": champion_now}
        write_json(report, record)
        log.info("%s: %s", name, why)
        return record

    check = check_champion(client, name, source, test_x, y)
    challenger_scores = _scores(y, predictions.loc[is_test, "p_served"].to_numpy())
    last_good = None
    if check.status in ("absent", "ok"):
        promote_it, why = decide(challenger_scores, check.scores, params.register.auc_tolerance)
        decision = "promoted" if promote_it else "challenger"
    else:
        promote_it, decision = False, f"champion_{check.status}"
        if check.status == "failed":
            last_good = last_good_version(client, name, check.version, test_x, y)
        why = (f"the champion (version {check.version}) cannot be evaluated on this test "
               f"split: {check.detail}. The challenger is not promoted automatically")

    example = model_input(features.head(5), bundle.features)
    refuse_personal(bundle, example, str(mdir / "bundle.joblib"))
    with tracking.start_run(run_id=run_id):
        if resumed is None:
            info = tracking.log_bundle_model(mdir / "bundle.joblib", registered_model_name=name)
            version = str(info.registered_model_version)
        else:
            version = resumed
        for key, value in {**hashes, "source": source}.items():
            client.set_model_version_tag(name, version, f"{TAG}{key}", value)
        kill_point("register.tagged")
        client.set_registered_model_alias(name, "challenger", version)
        how_to = None
        if promote_it:
            move_champion(client, name, version, how="register", why=why,
                          previous=check.version)
        elif decision.startswith("champion_"):
            how_to = (f"compare version {version} with the champion yourself, then "
                      f"`leadprop promote {version} --reason \"...\"`")
            why = f"{why}; to promote it by hand: {how_to}"
            if last_good is not None:
                why += (f". The last good version is {last_good} (an earlier champion that "
                        "still scores this split): `leadprop rollback` moves the champion "
                        "alias back")
        ml.log_dict(
            {
                "challenger": {"version": version, **challenger_scores},
                "champion": None if check.version is None
                else {"version": check.version, "status": check.status,
                      **(check.scores or {})},
                "promoted": promote_it,
                "decision": decision,
                "reason": why,
            },
            "registry_decision.json",
        )
        ml.set_tags({"registered_version": version, "promoted_to_champion": str(promote_it)})
        # last: the version's gate is complete (`find_identical` + `gate` = nothing to redo)
        for key, value in {"gate_reason": why[:4000], "gate": decision}.items():
            client.set_model_version_tag(name, version, f"{TAG}{key}", value)
    record = {
        **base,
        "decision": decision,
        "registered": True,
        "version": version,
        "challenger": challenger_scores,
        "previous_champion": check.scores,
        "previous_champion_version": check.version,
        "champion_status": check.status,
        "promoted": promote_it,
        "reason": why,
        "how_to_promote": how_to,
        "last_good_version": last_good,
        "champion_version": version if promote_it else check.version,
    }
    write_json(report, record)
    if check.status == "failed":
        log.error("%s: THE CHAMPION (version %s) FAILS: %s. Scoring with models:/%s@champion "
                  "will fail too. Last good version: %s. Version %s stays challenger.",
                  name, check.version, check.detail, name, last_good or "none found", version)
    (log.info if promote_it else log.warning)(
        "%s version %s %s champion: %s", name, version,
        "is now" if promote_it else "stays challenger; not", why,
    )
    return record
