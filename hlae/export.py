"""Export a trained encoder for sequences of one fixed length with ``torch.export``.

The training module packs sequences of different lengths (``pack_padded_sequence``) and
picks the chunks that hold observed steps with boolean masks: shapes that depend on the
data, which ``torch.export`` cannot trace. When every sequence has the same length ``T``,
all of that is known in advance: every chunk but the last is full and the last one has
``T - (C - 1) * L`` steps. :class:`FixedLengthEncoder` runs the trained encoder's own
layers (the same weights) along that static path, with the scaler folded in, so it maps
raw ``(batch, T, F)`` input to the same embeddings as
:meth:`hlae.HierarchicalAutoencoder.transform`. The batch size stays free.

The exported program is a ``.pt2`` file: load it with ``torch.export.load(path).module()``
(or :func:`load_encoder`) and call it on a float32 tensor; no hlae is needed to run it.
Missing values (NaN) are not supported by the exported encoder.
"""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from hlae.exceptions import ParameterError
from hlae.model import _last_states, hat_basis, relative_positions

__all__ = ["FixedLengthEncoder", "export_encoder", "load_encoder", "max_difference"]


class FixedLengthEncoder(nn.Module):
    """The encoder of a fitted model for input of exactly ``length`` steps, without packing.

    Parameters
    ----------
    model : HierarchicalAutoencoder
        A fitted model; its module's layers are shared, not copied.
    length : int
        Steps per sequence; every input must have exactly this many.

    Examples
    --------
    >>> encoder = FixedLengthEncoder(model, length=50)  # doctest: +SKIP
    >>> encoder(torch.randn(8, 50, model.n_features_in_)).shape  # doctest: +SKIP
    torch.Size([8, 10])
    """

    def __init__(self, model: Any, length: int) -> None:
        super().__init__()
        check_is_fitted(model, "module_")
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 2:
            raise ParameterError(f"length must be an integer of at least 2 steps, got {length!r}.")
        module = model.module_
        self.length = int(length)
        self.n_features = int(model.n_features_in_)
        self.variable_encoder = module.variable_encoder
        self.encoder_levels = module.encoder_levels
        self.top_encoder = module.top_encoder
        self.top_span = module.spans()[-1]
        self.register_buffer("shift", torch.as_tensor(model.scaler_.shift_, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(model.scaler_.scale_, dtype=torch.float32))
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, length, n_features)`` values in input units -> ``(batch, latent_dim)``."""
        B = x.shape[0]
        h = (x - self.shift) / self.scale

        # level over variables: every variable read alone, all steps observed
        if self.variable_encoder is not None:
            venc = self.variable_encoder
            F, T = self.n_features, self.length
            per_var = h.permute(0, 2, 1).reshape(B * F, T, 1)
            emb = venc.embedding[None, :, None, :].expand(B, F, T, 4).reshape(B * F, T, 4)
            out, _ = venc.lstm(torch.cat([per_var, emb], -1))
            h = out.reshape(B, F, T, -1).permute(0, 2, 1, 3).reshape(B, T, -1)

        # chunk levels: full chunks in one batch, the shorter last chunk in another
        units = self.length
        for level in self.encoder_levels:
            L = level.chunk_length
            C = math.ceil(units / L)
            last = units - (C - 1) * L  # steps in the last chunk, 1..L
            if C * L != units:
                h = torch.cat([h, h.new_zeros(B, C * L - units, h.shape[-1])], dim=1)
            chunks = h.reshape(B, C, L, -1)  # (B, C, L, D)
            D = chunks.shape[-1]
            states = []
            if C > 1:
                _, (hn, _) = level.lstm(chunks[:, : C - 1].reshape(B * (C - 1), L, D))
                states.append(_last_states(hn).reshape(B, C - 1, -1))
            _, (hn, _) = level.lstm(chunks[:, C - 1, :last])
            states.append(_last_states(hn).reshape(B, 1, -1))
            summary = level.proj(torch.cat(states, dim=1))
            h = summary + level.linear_path(chunks.reshape(B, C, L * D))  # (B, C, H)
            units = C

        # top level over the remaining units, with its linear path over relative time
        top = self.top_encoder
        _, (hn, _) = top.lstm(h)
        seq_lengths = torch.full((B,), self.length, dtype=torch.long, device=x.device)
        r = relative_positions(seq_lengths, units, self.top_span)  # (B, U)
        weights = hat_basis(r, top.n_basis)  # (B, U, K): every unit is observed
        pooled = torch.einsum("buk,bud->bkd", weights, h)
        pooled = pooled / (weights.sum(1)[..., None] + 1e-3)
        return top.to_latent(_last_states(hn)) + top.linear_path(pooled.flatten(1))


def export_encoder(model: Any, path: str | Path, length: int, *, device: str = "cpu") -> Path:
    """Export a fitted model's encoder for ``length``-step input to a ``.pt2`` file.

    Parameters
    ----------
    model : HierarchicalAutoencoder
        A fitted model.
    path : str or Path
        Output file (``.pt2`` by convention).
    length : int
        Steps per sequence of the exported encoder's input.
    device : str, default="cpu"
        Device the exported program runs on; a model trained on a GPU is copied there
        (the fitted model itself is left where it is).

    Returns
    -------
    Path
        The file written. Its program takes a float32 tensor ``(batch, length,
        n_features)`` in the input's units and returns ``(batch, latent_dim)``.

    Raises
    ------
    ParameterError
        When ``length`` is not an integer of at least 2.
    """
    encoder = copy.deepcopy(FixedLengthEncoder(model, length)).to(device)
    example = torch.zeros(2, encoder.length, encoder.n_features, device=device)
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad(), warnings.catch_warnings():
        # nn.LSTM re-assigns its flat weight list while traced; the program is unaffected
        warnings.filterwarnings("ignore", ".*_flat_weights.*", UserWarning)
        program = torch.export.export(encoder, (example,), dynamic_shapes={"x": {0: batch}})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(path))
    return path


def load_encoder(path: str | Path) -> Any:
    """Load an exported encoder: a callable module, ``(batch, T, F)`` -> ``(batch, latent)``."""
    return torch.export.load(str(path)).module()


def max_difference(model: Any, encoder: Any, X: np.ndarray) -> float:
    """Largest absolute difference between ``encoder(X)`` and ``model.transform(X)``.

    Parameters
    ----------
    model : HierarchicalAutoencoder
        The fitted model.
    encoder : callable
        An exported or :class:`FixedLengthEncoder` encoder.
    X : ndarray of shape (n, T, F)
        Sequences of the encoder's length, in input units.
    """
    X = np.asarray(X, dtype=np.float32)
    device = next((b.device for b in encoder.buffers()), torch.device("cpu"))
    with torch.no_grad():
        exported = encoder(torch.from_numpy(X).to(device)).cpu().numpy()
    return float(np.abs(exported - model.transform(X, layout="ntf")).max())
