"""aeon and scikit-learn: an aeon collection (n, channels, time) into a Pipeline.

aeon's loaders return collections channels first; hlae reads them with layout="nct" (or
hlae.data.from_aeon). A plain (n, T, F) array goes straight through a scikit-learn Pipeline.

Run from the repository root:  python examples/aeon_collection.py   (about 30 seconds)
"""

import numpy as np
import torch
from aeon.datasets import load_basic_motions
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import hlae
from hlae.data import from_aeon

torch.set_num_threads(1)
X_train, y_train = load_basic_motions(split="train")  # (40, 6, 100): channels first
X_test, y_test = load_basic_motions(split="test")
print("aeon collection:", X_train.shape)

# an (n, 6, 100) array is ambiguous (6 steps of 100 features, or 6 channels of 100 steps?),
# so hlae asks for the layout instead of guessing
try:
    hlae.HierarchicalAutoencoder().fit(X_train)
except ValueError as exc:
    print("without layout:", str(exc)[:90], "...")

params = dict(latent_dim=8, max_time=10, random_state=0)
model = hlae.HierarchicalAutoencoder(**params).fit(X_train, layout="nct")
print("embeddings:", model.transform(X_test, layout="nct").shape)
print(
    "reconstruction, channels first like the input:", model.reconstruct(X_test, layout="nct").shape
)
print("the same through from_aeon:", from_aeon(X_test).values[0].shape, "(time, channels)")

# in a Pipeline: give it (n, T, F) arrays
to_ntf = np.ascontiguousarray(X_train.transpose(0, 2, 1))
pipe = make_pipeline(
    hlae.HierarchicalAutoencoder(**params), StandardScaler(), LogisticRegression(max_iter=1000)
)
pipe.fit(to_ntf, y_train)
print(
    f"test accuracy of embeddings + logistic regression: "
    f"{pipe.score(X_test.transpose(0, 2, 1), y_test):.2f}"
)
