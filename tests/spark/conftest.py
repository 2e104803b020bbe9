"""The Spark engine's tests run on a real `local[2]` session. They are the only tests that
need Java: without a Java runtime >= 17 the whole folder is skipped, saying what to install
(`.ci/run` installs it on CI)."""

from __future__ import annotations

import warnings

import pytest

from pipeline.spark.session import MIN_JAVA, SparkSettings, java_version

_JAVA = java_version()
_REASON = (f"the Spark tests need a Java runtime >= {MIN_JAVA}; found "
           f"{'none' if _JAVA is None else _JAVA}. Debian/Ubuntu: "
           "`sudo apt-get install openjdk-17-jre-headless` (or run .ci/run)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _JAVA is not None and _JAVA >= MIN_JAVA:
        return
    skip = pytest.mark.skip(reason=_REASON)
    for item in items:
        if "tests/spark/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def spark():
    """One local[2] session for the whole folder (4 shuffle partitions)."""
    from pipeline.spark.session import spark_session

    warnings.filterwarnings("ignore", message=".*pandas >= 3.0.0.*")
    session = spark_session(SparkSettings(master="local[2]", partitions=4,
                                          arrow_batch_rows=500))
    yield session
    session.stop()
