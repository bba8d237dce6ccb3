"""``foveanet models``: the registered models, their options and what they are."""
from __future__ import annotations

import sys

from ..models import list_models, lookup, model_options
from ..train.run import RESERVED_OPTIONS
from .common import Formatter, table

EPILOG = """\
examples:
  foveanet models
  foveanet summary NAME        the layers of one of them
"""


def add_parser(sub):
    return sub.add_parser("models", help="list the registered models",
                          description="List the registered models and their options.",
                          epilog=EPILOG, formatter_class=Formatter)


def command(args) -> int:
    rows = []
    for name in list_models():
        # the first sentence of the constructor's docstring, cut to fit a terminal
        doc = " ".join((lookup(name).__doc__ or "").strip().split("\n\n")[0].split())
        doc = doc.split(": ")[0].rstrip(".")
        doc = doc if len(doc) <= 72 else doc[:69].rstrip() + "..."
        opts = ", ".join(f"{k}={v}" for k, v in model_options(name).items()
                         if k not in RESERVED_OPTIONS)
        rows.append((name, opts, doc))
    table("Models (foveanet train --model NAME --model-option KEY=VALUE)",
          ["name", "options", "description"], rows, sys.stdout.isatty(),
          align=["left", "left", "left"])
    return 0
