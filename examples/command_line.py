"""The command line on files: a TOML configuration, fit, encode, report and export.

Writes a long table of coupled oscillators to CSV, then runs the same commands a user would
type (through hlae.cli.main, so no shell is needed). Everything lands in a temporary
directory whose path is printed.

Run from the repository root:  python examples/command_line.py   (about 40 seconds)
"""

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from hlae.cli import main
from hlae.datasets import make_oscillators

out = Path(tempfile.mkdtemp(prefix="hlae-example-"))
seqs = make_oscillators(n_sequences=60, n_features=3, min_length=30, max_length=80, random_state=0)
rows = [
    pd.DataFrame(
        {
            "unit": f"u{i}",
            "t": np.arange(len(x)),
            "a": x[:, 0],
            "b": x[:, 1],
            "c": x[:, 2],
            "site": "north" if i % 2 else "south",
        }
    )
    for i, x in enumerate(seqs)
]
pd.concat(rows).to_csv(out / "sensors.csv", index=False)

(out / "run.toml").write_text("""
[model]
latent_dim = 6
hidden_size = 32

[training]
max_epochs = 30
max_time = 15
random_state = 0

[data]
path = "sensors.csv"
id_column = "unit"
order_column = "t"
features = ["a", "b", "c"]
""")

# flags on the command line override the file; the resolved configuration is saved
assert (
    main(
        ["fit", "--config", str(out / "run.toml"), "--out", str(out / "run"), "--max-epochs", "20"]
    )
    == 0
)
print((out / "run" / "config.toml").read_text()[:300], "...")

data = [str(out / "sensors.csv"), "--id-column", "unit", "--order-column", "t"]
assert (
    main(
        [
            "encode",
            str(out / "run"),
            *data,
            "--features",
            "a,b,c",
            "--out",
            str(out / "embeddings.parquet"),
        ]
    )
    == 0
)
assert (
    main(
        ["report", str(out / "run"), *data, "--labels", "site", "--out", str(out / "report.html")]
    )
    == 0
)
assert main(["export", str(out / "run"), "--length", "50", "--out", str(out / "encoder.pt2")]) == 0
print("open", out / "report.html")
