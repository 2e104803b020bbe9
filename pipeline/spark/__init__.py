"""The Spark engine (`--engine spark`): the embedded feature builder and scoring core run
per lead-hash bucket on a Spark session (`features.py`, `score.py`); `session.py` builds
the session. Imported only when the Spark engine is asked for: pyspark and a Java runtime
>= 17 are needed then and only then."""
