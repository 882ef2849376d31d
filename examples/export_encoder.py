"""Export a trained encoder for fixed-length input with torch.export, and run it.

Run from the repository root:  python examples/export_encoder.py   (about 30 seconds)
"""

import tempfile
from pathlib import Path

import numpy as np
import torch

import hlae
from hlae.datasets import make_oscillators
from hlae.export import export_encoder

torch.set_num_threads(1)
train = make_oscillators(
    n_sequences=80, n_features=3, min_length=50, max_length=70, random_state=0
)
model = hlae.HierarchicalAutoencoder(latent_dim=6, max_time=10, random_state=0).fit(train)

# the exported program takes (batch, 48, 3) values in the data's units
path = export_encoder(model, Path(tempfile.mkdtemp()) / "encoder.pt2", length=48)
encoder = torch.export.load(str(path)).module()  # needs only torch to run

X = np.stack([s[:48] for s in train[:5]]).astype(np.float32)
with torch.no_grad():
    exported = encoder(torch.from_numpy(X)).numpy()
difference = np.abs(exported - model.transform(X)).max()
print(f"exported to {path}; largest difference from the model: {difference:.1e}")
