"""The ``churn-pipeline`` command: one sub-command per DVC stage, plus a schema check.

``dvc repro`` runs these (see dvc.yaml); they also run by hand from the project root::

    churn-pipeline generate              # data/raw/telco_churn.csv (synthetic, or data.source)
    churn-pipeline prepare               # split + fitted preprocessing in data/processed/
    churn-pipeline train --model v1      # models/model_v1.pkl + .json, MLflow run
    churn-pipeline evaluate              # models/metrics.json
    churn-pipeline check my.csv          # does a CSV have the Telco schema?

Exit status: 0 on success, 2 for a bad params file or a CSV that does not match the schema,
1 when MLflow cannot take the run or the artifacts are out of step with their metadata.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from churn.config import DEFAULT_PARAMS_FILE, ArtifactPaths, ParamsError, load_params

log = logging.getLogger("churn.pipeline")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="churn-pipeline", description="Stages of the churn training pipeline."
    )
    parser.add_argument(
        "--root", type=Path, default=Path("."), help="project root (default: current folder)"
    )
    parser.add_argument(
        "--params",
        type=Path,
        default=None,
        help=f"params file (default: <root>/{DEFAULT_PARAMS_FILE.as_posix()})",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("generate", help="write the raw CSV: generated, or a copy of data.source")
    sub.add_parser("prepare", help="split the raw CSV and fit the preprocessing")
    train = sub.add_parser("train", help="train one model version and log it to MLflow")
    train.add_argument("--model", required=True, help="model version in the params file")
    evaluate = sub.add_parser("evaluate", help="held-out metrics of every version")
    evaluate.add_argument(
        "--models", nargs="+", default=None, help="versions (default: all in the params file)"
    )
    check = sub.add_parser("check", help="check a CSV against the Telco schema")
    check.add_argument("csv", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one pipeline command; return the process exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from churn import dataset  # after parsing, so `--help` answers without pandas

    try:
        if args.command == "check":
            dataset.load_csv(args.csv)
            print(f"{args.csv}: matches the Telco Customer Churn schema")
            return 0
        root = args.root.resolve()
        params = load_params(args.params or root / DEFAULT_PARAMS_FILE)
        paths = ArtifactPaths(root)
        if args.command == "generate":
            out = dataset.materialize_raw(paths.raw_csv, params.data, root)
            log.info("generate: wrote %s (source: %s)", out, params.data.source or "generator")
        elif args.command == "prepare":
            from churn.features import prepare

            prepare(paths, params.split)
        elif args.command == "train":
            from churn.train import train

            params.model(args.model)  # fail on an unknown version before loading anything
            train(paths, params, args.model)
        elif args.command == "evaluate":
            from churn.evaluate import evaluate

            evaluate(paths, args.models or list(params.models))
    except (dataset.DataSchemaError, ParamsError, FileNotFoundError) as exc:
        print(f"churn-pipeline {args.command}: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # MLflow unreachable or unusable, artifacts out of step
        print(f"churn-pipeline {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
