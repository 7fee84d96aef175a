"""The README's collapse map: the recall task over forget bias in [-3, 3] x sequence length 5..200, H = 32.

    python scripts/collapse_map.py [--out results/collapse_map]

Trains 13 x 6 x 4 = 312 LSTMs (Adam, learning rate 0.01, 400 steps of 32 sequences, 384 training and
128 validation sequences per length) with ``gradflow.collapse_map`` and writes the store
(``results.zarr``), the phase diagram and loss curves (``figures/``) and the onset table
(``figures/collapse_table.md``). Resumable: rerun the same command after an interruption.
About five minutes on a 2-core CPU (270 s measured).
"""

import argparse
import sys
import time
from pathlib import Path

import gradflow as gf

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", default=str(ROOT / "results" / "collapse_map"), help="output directory")
    parser.add_argument("--overwrite", action="store_true", help="replace a store of a different config")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    result = gf.collapse_map(ROOT / "configs" / "collapse_recall.toml", args.out, overwrite=args.overwrite)
    print((Path(args.out) / "figures" / "collapse_table.md").read_text())
    print(f"{len(result.files)} files in {Path(args.out) / 'figures'} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
