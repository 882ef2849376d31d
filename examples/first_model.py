"""A first model: embeddings, reconstructions and errors on JapaneseVowels, beside PCA.

Run from the repository root:  python examples/first_model.py   (about 30 seconds)
"""

import tempfile

import torch

import hlae
from hlae.datasets import load_japanese_vowels
from hlae.evaluation import pca_baseline, standardised_mse

torch.set_num_threads(1)
train, labels = load_japanese_vowels("train")  # 270 sequences of 12 features, 7 to 26 steps
test, _ = load_japanese_vowels("test")

# max_time keeps the example short; the best weights on the validation split are kept
model = hlae.HierarchicalAutoencoder(latent_dim=10, max_time=20, random_state=0).fit(train)
print(f"trained {len(model.history_)} epochs, chunks of {model.chunk_lengths_} steps")

z = model.transform(test)  # (370, 10) embeddings
recon = model.reconstruct(test)  # a list of (T_i, 12) arrays, in the input's units
errors = model.reconstruction_error(test)  # (370,) mean squared error, scaled units
print(f"embeddings {z.shape}, worst sequence {errors.argmax()} (error {errors.max():.3f})")

# the trivial answers every model has to beat
print(
    f"held-out MSE: hlae {standardised_mse(recon, test, train):.3f}, PCA(10) "
    f"{standardised_mse(pca_baseline(train, test, 10), test, train):.3f}, mean about 1.0"
)

with tempfile.TemporaryDirectory() as tmp:
    model.save(tmp)  # safetensors weights and a JSON configuration, no pickle
    again = hlae.load(tmp)
    assert (again.transform(test) == z).all()
