"""Operations helpers: the stack driver, images, artifacts, publishing and tool installs.

Why a package of its own: `noxfile.py`, `benchmarks/` and the container suites (smoke, browser,
reliability, publish, devcontainer) all drive the product the same way (one Compose CLI choice,
one stack environment, one wait until healthy, one base-image choice, one publish flow), and they
share this code instead of keeping copies. It lives beside the product in `src/` so that the
project's editable install puts it on every nox session's path, and `noxfile.py` puts `src/` on
its own path to import it. The product (`src/churn`) never imports it (a unit test checks the
import graph), and no image contains it: `.dockerignore` leaves `src/churn_ops/` out of the build
context. Modules import only the standard library at import time, so that the noxfile can use
them from the Python that runs nox; `artifacts` reaches MLflow in a session's environment only.
"""
