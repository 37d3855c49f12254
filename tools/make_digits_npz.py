"""Convert the UCI 8x8 digits CSV (../shared/data/digits/digits.csv.gz) into the bundled
src/ranvier/datasets/data/digits.npz. Run once; the .npz is committed.

    python tools/make_digits_npz.py [path/to/digits.csv.gz]
"""
import gzip
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "shared", "data",
                                                         "digits", "digits.csv.gz")
DST = os.path.join(HERE, "..", "src", "ranvier", "datasets", "data", "digits.npz")

with gzip.open(SRC, "rt") as f:
    rows = np.loadtxt(f, delimiter=",", dtype=np.int64)
assert rows.shape == (1797, 65), rows.shape
assert rows[:, :64].min() >= 0 and rows[:, :64].max() <= 16
assert set(np.unique(rows[:, 64])) == set(range(10))
np.savez_compressed(DST, images=rows[:, :64].astype(np.uint8), labels=rows[:, 64].astype(np.uint8))
print(f"wrote {DST}: {os.path.getsize(DST)} bytes")
