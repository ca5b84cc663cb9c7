"""Writes a synthetic corpus to disk: one ``.h5`` per session (brainsets layout) plus a ``dataset.json`` manifest.

Usage::

  python -m data_pipeline.synth --preset=demo --out=runs/data/demo [--seed=0] [--overwrite]

Presets: ``tiny``, ``demo``, ``single``, ``bench`` (reaching), ``handwriting``, ``speech``.
"""

from __future__ import annotations

import argparse

from data_pipeline.synth.presets import PRESETS
from data_pipeline.synth.writer import OTHER_PRESETS, write_corpus


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m data_pipeline.synth", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo", choices=sorted([*PRESETS, *OTHER_PRESETS]))
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace existing session files")
    args = parser.parse_args(argv)
    manifest = write_corpus(args.preset, args.out, args.seed, args.overwrite)
    print(f"wrote {len(manifest['sessions'])} sessions and dataset.json to {args.out}")


if __name__ == "__main__":
    main()
