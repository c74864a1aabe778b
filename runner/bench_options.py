"""Checks of the options `runner bench`'s model and LLM levels share, made before a workload
is read or a model loaded."""

from __future__ import annotations

import argparse

from ir.errors import AsicperfError
from passes.pipeline import parse_pipeline


def check_shared_options(args: argparse.Namespace) -> None:
    """Something to run (`--model` or `--workload`), a seed LoadGen takes, and a pipeline spec
    that parses."""
    if not (args.model or args.workload):
        raise AsicperfError(f"--level {args.level} needs --model or --workload")
    if args.seed < 0:
        raise AsicperfError(f"--seed {args.seed}: must be 0 or more")
    if args.pipeline:
        parse_pipeline(args.pipeline)  # a bad spec fails before the model is loaded
