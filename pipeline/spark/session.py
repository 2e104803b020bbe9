"""The Spark session of the Spark engine, and the Java check.

`spark_session(settings)` returns the active session when there is one (a Databricks or
`spark-submit` job brings its own), else builds one from `SparkSettings`: `master`,
`spark.sql.shuffle.partitions` = `partitions`, Arrow on with
`spark.sql.execution.arrow.maxRecordsPerBatch` = `arrow_batch_rows`, the UI off, the
session time zone UTC (timestamps cross the boundary as UTC). Python workers use this
interpreter (`PYSPARK_PYTHON` / `PYSPARK_DRIVER_PYTHON` default to `sys.executable`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError

#: The oldest Java that pyspark 4 runs on.
MIN_JAVA = 17
ENGINES = ("embedded", "spark")


@dataclass(frozen=True)
class SparkSettings:
    """`spark:` in params.yaml: `master` (local[2], yarn, spark://host:7077...; ignored when
    a session is already active), `partitions` (lead-hash buckets = Spark groups and shuffle
    partitions), `arrow_batch_rows` (rows per Arrow batch between the JVM and Python),
    `app_name`, `driver_memory` (`spark.driver.memory`, e.g. "8g"; in local mode the one JVM
    is driver and executor; None: Spark's default, 1g), `exchange_dir` (where the driver and
    the workers pass each bucket's leads and results as files, `buckets.Exchange`: a folder
    or fsspec URL every executor can reach; None: a temporary folder, local mode only)."""

    master: str = "local[2]"
    partitions: int = 8
    arrow_batch_rows: int = 10_000
    app_name: str = "leadprop"
    driver_memory: str | None = None
    exchange_dir: str | None = None

    def __post_init__(self) -> None:
        for name in ("partitions", "arrow_batch_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"`spark.{name}` must be an integer >= 1; got {value!r}")
        if self.driver_memory is not None and not re.fullmatch(r"\d+[kmgt]?",
                                                                str(self.driver_memory)):
            raise ConfigError("`spark.driver_memory` must be a JVM memory size like 4g or "
                              f"512m; got {self.driver_memory!r}")
        if not isinstance(self.master, str) or not self.master:
            raise ConfigError(f"`spark.master` must be a Spark master URL like local[2]; "
                              f"got {self.master!r}")

    @classmethod
    def from_params(cls, raw: Any) -> SparkSettings:
        raw = dict(raw or {})
        allowed = {"master", "partitions", "arrow_batch_rows", "app_name", "driver_memory",
                   "exchange_dir"}
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise ConfigError(f"params: unknown key(s) in `spark`: {unknown} (allowed: "
                              f"{', '.join(sorted(allowed))})")
        return cls(**raw)


def check_engine(engine: str) -> str:
    """`engine` if it is one of ENGINES, else ConfigError."""
    if engine not in ENGINES:
        raise ConfigError(f"`engine` must be one of {', '.join(ENGINES)}; got {engine!r}")
    return engine


def java_version(java: str | None = None) -> int | None:
    """The major version of `java` on PATH (or JAVA_HOME/bin/java), None when there is none."""
    if java is None:
        home = os.environ.get("JAVA_HOME")
        java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.path.exists(java):
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_java_version(out.stderr + out.stdout)


def parse_java_version(text: str) -> int | None:
    """Major version from `java -version` output: '"17.0.9"' -> 17, '"1.8.0_392"' -> 8."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def require_java() -> None:
    """ConfigError saying what to install when no Java >= MIN_JAVA is found."""
    found = java_version()
    if found is None or found < MIN_JAVA:
        have = "no java on PATH" if found is None else f"java {found}"
        raise ConfigError(
            f"--engine spark needs a Java runtime >= {MIN_JAVA}; found {have}. Install one "
            "(Debian/Ubuntu: `sudo apt-get install openjdk-17-jre-headless`) or set JAVA_HOME, "
            "or use --engine embedded.")


def spark_session(settings: SparkSettings | None = None) -> Any:
    """The active Spark session, or a new one built from `settings` (see module doc)."""
    settings = settings or SparkSettings()
    try:
        from pyspark.sql import SparkSession
    except ImportError as err:
        raise ConfigError("--engine spark needs pyspark: `pip install pyspark` (pinned in "
                          "requirements.lock)") from err
    from pipeline.spark.buckets import EXCHANGE_CONF

    active = SparkSession.getActiveSession()
    if active is not None:
        active.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch",
                        str(settings.arrow_batch_rows))
        if settings.exchange_dir:
            active.conf.set(EXCHANGE_CONF, str(settings.exchange_dir))
        return active
    require_java()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder
    if settings.driver_memory:
        builder = builder.config("spark.driver.memory", settings.driver_memory)
    if settings.exchange_dir:
        builder = builder.config(EXCHANGE_CONF, str(settings.exchange_dir))
    session = (
        builder.master(settings.master)
        .appName(settings.app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(settings.partitions))
        .config("spark.default.parallelism", str(settings.partitions))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(settings.arrow_batch_rows))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session
