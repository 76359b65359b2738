"""The benchmark suite behind `nox -s bench`: wrk loads, `mlflow models serve`, report, chart."""
