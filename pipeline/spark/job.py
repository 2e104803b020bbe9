"""The `spark-submit` entry of leadprop: `spark-submit [spark options] job.py <verb> [args]`
runs `leadprop <verb> [args]` (e.g. `features --engine spark --params params.yaml`) inside
the session spark-submit configured (master, executors, memory).

The session is created here, from spark-submit's configuration, before the CLI runs, so
`pipeline.spark.session.spark_session` finds it active and uses it as it is (it builds its
own, from `spark.master` in params, only when there is none). On Databricks a session is
already active: run the `leadprop` console script of the wheel as a Python wheel task.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Create (or get) the spark-submit session, then run the leadprop CLI on `argv`."""
    from pyspark.sql import SparkSession

    from pipeline.cli import app

    SparkSession.builder.getOrCreate()
    try:
        app(args=list(sys.argv[1:] if argv is None else argv), prog_name="leadprop")
    except SystemExit as done:  # typer exits; keep its status for spark-submit
        return int(done.code or 0)
    return 0


if __name__ == "__main__":  # pragma: no cover - the spark-submit entry
    sys.exit(main())
