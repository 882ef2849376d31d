"""The hierarchical LSTM autoencoder as a plain PyTorch module.

Reading guide. A batch ``x`` of shape ``(B, T, F)`` with ``lengths`` goes through:

    encoder  [variable level]  each variable read alone by one LSTM shared across variables
             chunk levels       steps -> chunks of L1 steps -> chunks of L2 chunks -> ...
                                each level: a bidirectional LSTM over every chunk of the batch
                                at once (packed, so padding never enters), plus a linear path
             top level          a bidirectional LSTM over the remaining units -> latent z
    decoder  top level          z -> one embedding per top unit ("conductor")
             chunk levels       each embedding -> its chunk's units, told their position
             head               linear, -> (B, T, F)

A flat autoencoder is the same module with no chunk levels. Every level of the decoder adds a
linear path (from the parent embedding, weighted by the unit's position) to its LSTM's
output, so the model starts near a linear autoencoder over time-normalised sequences and the
LSTMs learn what is not linear; the low-level decoder is driven by its chunk embedding, not
by its own previous outputs, so it cannot ignore the latent.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = ["HierarchicalLSTMAutoencoder", "relative_positions"]

N_FOURIER = 4  # sine/cosine pairs describing a unit's relative position in its sequence


def relative_positions(lengths: torch.Tensor, n_units: int, span: int) -> torch.Tensor:
    """Centre of each unit (of ``span`` steps) as a fraction of its sequence's length.

    Returns ``(B, n_units)`` values in ``[0, 1]``.
    """
    centre = torch.arange(n_units, device=lengths.device, dtype=torch.float32) * span
    centre = centre + 0.5 * span
    return (centre[None, :] / lengths[:, None].float()).clamp(max=1.0)


def fourier_features(r: torch.Tensor) -> torch.Tensor:
    """``(..., 1 + 2 * N_FOURIER)`` smooth features of relative positions ``r``."""
    k = torch.arange(1, N_FOURIER + 1, device=r.device, dtype=r.dtype) * math.pi
    angles = r[..., None] * k
    return torch.cat([r[..., None], torch.sin(angles), torch.cos(angles)], dim=-1)


def hat_basis(r: torch.Tensor, n_basis: int) -> torch.Tensor:
    """Piecewise-linear "hat" functions on ``[0, 1]``: ``(..., n_basis)``, summing to one."""
    knots = torch.linspace(0.0, 1.0, n_basis, device=r.device, dtype=r.dtype)
    width = 1.0 / (n_basis - 1)
    return (1.0 - (r[..., None] - knots).abs() / width).clamp(min=0.0)


def _last_states(h: torch.Tensor) -> torch.Tensor:
    """Concatenate both directions of the last layer: ``(layers*2, N, H)`` -> ``(N, 2H)``."""
    return torch.cat([h[-2], h[-1]], dim=-1)


def _run_all_packed(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor, state=None):
    """Run ``lstm`` over padded ``x`` (N, L, D) as one packed batch; padding never enters."""
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, (h, c) = lstm(packed, state)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out, h


def _float16_on_cpu(x: torch.Tensor) -> bool:
    """True when a CPU LSTM would run in float16, which oneDNN's LSTM refuses."""
    if x.is_cuda:
        return False
    if x.dtype == torch.float16:
        return True
    try:
        on = torch.is_autocast_enabled("cpu")
        dtype = torch.get_autocast_dtype("cpu")
    except (TypeError, AttributeError):  # PyTorch before 2.4
        on, dtype = torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
    return bool(on) and dtype == torch.float16


def _run_packed(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor, state=None):
    """Run ``lstm`` over padded ``x`` (N, L, D) honouring ``lengths``; padding never enters.

    Returns the output (zero at padded steps) and the last hidden state of each sequence.
    On CPU, an LSTM over a packed batch of unequal lengths takes PyTorch's step-by-step
    path, whose backward pass grows with (steps x all steps), while a batch of one length
    runs the fused oneDNN kernel. Most chunks of the time hierarchy fill their chunk, so
    the full-length rows run unpacked and only the rest (partial last chunks) are packed:
    the same results, several times faster on long, unequal sequences. cuDNN handles
    packed batches well, so on CUDA everything is packed. On CPU in float16, which oneDNN's
    LSTM does not support at all, the LSTM runs in float32.
    """
    if _float16_on_cpu(x):
        # oneDNN has no float16 LSTM (packed or not): run this one in float32
        with torch.autocast("cpu", enabled=False):
            state = None if state is None else tuple(s.float() for s in state)
            return _run_packed(lstm, x.float(), lengths, state)
    L = x.shape[1]
    full = lengths == L
    n_full = int(full.sum())
    if n_full == len(lengths):
        out, (h, _) = lstm(x, state)
        return out, h
    if n_full == 0 or x.is_cuda:
        return _run_all_packed(lstm, x, lengths, state)
    idx_full = full.nonzero().squeeze(1)
    idx_part = (~full).nonzero().squeeze(1)

    def rows(idx):
        return None if state is None else tuple(s[:, idx].contiguous() for s in state)

    out_f, (h_f, _) = lstm(x[idx_full], rows(idx_full))
    out_p, h_p = _run_all_packed(lstm, x[idx_part], lengths[idx_part], rows(idx_part))
    out = out_f.new_zeros(len(lengths), L, out_f.shape[-1])
    out = out.index_copy(0, idx_full, out_f).index_copy(0, idx_part, out_p)
    h = h_f.new_zeros(h_f.shape[0], len(lengths), h_f.shape[2])
    h = h.index_copy(1, idx_full, h_f).index_copy(1, idx_part, h_p)
    return out, h


def _chunk_view(x: torch.Tensor, lengths: torch.Tensor, L: int):
    """Cut ``(B, T, D)`` into chunks of ``L`` steps: ``(B*C, L, D)``, chunk lengths, ``C``."""
    B, T, D = x.shape
    C = max(1, math.ceil(T / L))
    if C * L != T:
        x = torch.cat([x, x.new_zeros(B, C * L - T, D)], dim=1)
    starts = torch.arange(C, device=lengths.device) * L
    chunk_lengths = (lengths[:, None] - starts[None, :]).clamp(min=0, max=L)  # (B, C)
    return x.reshape(B * C, L, D), chunk_lengths.reshape(-1), C


class VariableEncoder(nn.Module):
    """Level one over variables: one small LSTM reads each variable on its own.

    The weights are shared across variables; a learned embedding per variable tells them
    apart. Output per step is the concatenation of the per-variable states.
    """

    def __init__(self, n_features: int, variable_size: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(n_features, 4) * 0.1)
        self.lstm = nn.LSTM(1 + 4, variable_size, batch_first=True)
        self.out_dim = n_features * variable_size

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        N, L, F = x.shape
        # (N, L, F) -> (N*F, L, 1 + 4): each variable becomes its own sequence
        per_var = x.permute(0, 2, 1).reshape(N * F, L, 1)
        emb = self.embedding[None, :, None, :].expand(N, F, L, 4).reshape(N * F, L, 4)
        out, _ = _run_packed(
            self.lstm, torch.cat([per_var, emb], -1), lengths.repeat_interleave(F)
        )
        return out.reshape(N, F, L, -1).permute(0, 2, 1, 3).reshape(N, L, -1)


class LevelEncoder(nn.Module):
    """Summarise every chunk of ``chunk_length`` units into one vector."""

    def __init__(self, in_dim: int, hidden_size: int, chunk_length: int) -> None:
        super().__init__()
        self.chunk_length = chunk_length
        self.lstm = nn.LSTM(in_dim, hidden_size, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * hidden_size, hidden_size)
        self.linear_path = nn.Linear(chunk_length * in_dim, hidden_size)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        B = x.shape[0]
        chunks, chunk_lengths, C = _chunk_view(x, lengths, self.chunk_length)
        valid = chunk_lengths > 0
        chunks_v = chunks[valid]  # (N, L, D), only chunks holding observed steps
        _, h = _run_packed(self.lstm, chunks_v, chunk_lengths[valid])
        summary_v = self.proj(_last_states(h)) + self.linear_path(chunks_v.flatten(1))
        summary = summary_v.new_zeros(B * C, summary_v.shape[-1])
        summary[valid] = summary_v
        next_lengths = torch.div(
            lengths + self.chunk_length - 1, self.chunk_length, rounding_mode="floor"
        )
        return summary.view(B, C, -1), next_lengths


class TopEncoder(nn.Module):
    """Read the remaining units of each sequence into the latent vector."""

    def __init__(self, in_dim: int, hidden_size: int, latent_dim: int, n_basis: int) -> None:
        super().__init__()
        self.n_basis = n_basis
        self.lstm = nn.LSTM(in_dim, hidden_size, batch_first=True, bidirectional=True)
        self.to_latent = nn.Linear(2 * hidden_size, latent_dim)
        # Linear path: resample the units onto n_basis points of relative time, then project.
        self.linear_path = nn.Linear(n_basis * in_dim, latent_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, span: int, seq_lengths):
        B, U, D = x.shape
        _, h = _run_packed(self.lstm, x, lengths)
        r = relative_positions(seq_lengths, U, span)  # (B, U)
        observed = torch.arange(U, device=x.device)[None, :] < lengths[:, None]
        weights = hat_basis(r, self.n_basis) * observed[..., None]  # (B, U, K)
        pooled = torch.einsum("buk,bud->bkd", weights, x)
        pooled = pooled / (weights.sum(1)[..., None] + 1e-3)
        return self.to_latent(_last_states(h)) + self.linear_path(pooled.flatten(1))


class TopDecoder(nn.Module):
    """Turn the latent into one embedding per top unit (the "conductor")."""

    def __init__(self, latent_dim: int, hidden_size: int, out_dim: int, n_basis: int) -> None:
        super().__init__()
        self.n_basis, self.hidden_size, self.out_dim = n_basis, hidden_size, out_dim
        n_pos = 1 + 2 * N_FOURIER
        self.init_state = nn.Linear(latent_dim, 4 * hidden_size)
        self.lstm = nn.LSTM(latent_dim + n_pos, hidden_size, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * hidden_size, out_dim)
        self.linear_path = nn.Linear(latent_dim, n_basis * out_dim)

    def forward(self, z: torch.Tensor, lengths: torch.Tensor, span: int, seq_lengths):
        B, U = z.shape[0], int(lengths.max())
        r = relative_positions(seq_lengths, U, span)  # (B, U)
        inputs = torch.cat([z[:, None, :].expand(B, U, -1), fourier_features(r)], dim=-1)
        h0, c0 = (
            torch.tanh(self.init_state(z)).view(B, 4, self.hidden_size).transpose(0, 1).chunk(2)
        )
        out, _ = _run_packed(self.lstm, inputs, lengths, (h0.contiguous(), c0.contiguous()))
        skip = self.linear_path(z).view(B, 1, self.n_basis, self.out_dim)
        skip = (hat_basis(r, self.n_basis)[..., None] * skip).sum(2)  # (B, U, out_dim)
        return self.proj(out) + skip


class LevelDecoder(nn.Module):
    """Expand each chunk embedding into the ``chunk_length`` units of its chunk."""

    def __init__(self, in_dim: int, hidden_size: int, out_dim: int, chunk_length: int) -> None:
        super().__init__()
        self.chunk_length, self.hidden_size, self.out_dim = chunk_length, hidden_size, out_dim
        n_pos = chunk_length + 1 + 2 * N_FOURIER
        self.init_state = nn.Linear(in_dim, 4 * hidden_size)
        self.lstm = nn.LSTM(in_dim + n_pos, hidden_size, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * hidden_size, out_dim)
        self.linear_path = nn.Linear(in_dim, chunk_length * out_dim)

    def forward(self, parent: torch.Tensor, lengths: torch.Tensor, span: int, seq_lengths):
        B, C, E = parent.shape
        L = self.chunk_length
        T = int(lengths.max())
        starts = torch.arange(C, device=parent.device) * L
        chunk_lengths = (lengths[:, None] - starts[None, :]).clamp(min=0, max=L).reshape(-1)
        valid = chunk_lengths > 0
        parent_v = parent.reshape(B * C, E)[valid]  # (N, E)
        N = parent_v.shape[0]

        # position of each unit: one-hot within its chunk, and relative within its sequence
        r = relative_positions(seq_lengths, C * L, span).view(B * C, L)[valid]  # (N, L)
        onehot = torch.eye(L, device=parent.device).expand(N, L, L)
        inputs = torch.cat(
            [parent_v[:, None, :].expand(N, L, E), onehot, fourier_features(r)], dim=-1
        )
        h0, c0 = torch.tanh(self.init_state(parent_v)).view(N, 4, -1).transpose(0, 1).chunk(2)
        out, _ = _run_packed(
            self.lstm, inputs, chunk_lengths[valid], (h0.contiguous(), c0.contiguous())
        )
        units_v = self.proj(out) + self.linear_path(parent_v).view(N, L, self.out_dim)
        units = units_v.new_zeros(B * C, L, self.out_dim)
        units[valid] = units_v
        return units.view(B, C * L, self.out_dim)[:, :T]


class HierarchicalLSTMAutoencoder(nn.Module):
    """Hierarchical LSTM autoencoder over time and, optionally, over variables.

    Parameters
    ----------
    n_features : int
        Number of variables per step.
    latent_dim : int
        Size of the latent vector of a sequence.
    hidden_size : int
        Width of every LSTM level.
    chunk_lengths : sequence of int
        Chunk length of each level from the bottom; empty for a flat autoencoder.
    variables : bool
        Add the level over variables at the bottom of the encoder.
    variable_size : int
        Width of the per-variable LSTM.
    dropout : float
        Dropout applied between levels.
    n_basis : int
        Number of relative-time points of the top level's linear path.
    """

    def __init__(
        self,
        n_features: int,
        *,
        latent_dim: int = 10,
        hidden_size: int = 64,
        chunk_lengths: tuple[int, ...] = (8,),
        variables: bool = False,
        variable_size: int = 8,
        dropout: float = 0.1,
        n_basis: int = 8,
    ) -> None:
        super().__init__()
        self.n_features = n_features
        self.chunk_lengths = tuple(int(c) for c in chunk_lengths)
        self.drop = nn.Dropout(dropout)

        in_dim = n_features
        self.variable_encoder = None
        if variables:
            self.variable_encoder = VariableEncoder(n_features, variable_size)
            in_dim = self.variable_encoder.out_dim
        self.encoder_levels = nn.ModuleList()
        for L in self.chunk_lengths:
            self.encoder_levels.append(LevelEncoder(in_dim, hidden_size, L))
            in_dim = hidden_size
        self.top_encoder = TopEncoder(in_dim, hidden_size, latent_dim, n_basis)

        self.top_decoder = TopDecoder(latent_dim, hidden_size, hidden_size, n_basis)
        self.decoder_levels = nn.ModuleList(
            LevelDecoder(hidden_size, hidden_size, hidden_size, L)
            for L in reversed(self.chunk_lengths)
        )
        self.head = nn.Linear(hidden_size, n_features)

    def spans(self) -> list[int]:
        """Steps covered by one unit at each level, bottom (1) to top."""
        spans = [1]
        for L in self.chunk_lengths:
            spans.append(spans[-1] * L)
        return spans

    def encode(self, x: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, T, F)`` values, observed mask, lengths -> latent ``(B, latent_dim)``."""
        h = x * mask  # padded and missing values are zero whatever they held
        if self.variable_encoder is not None:
            h = self.variable_encoder(h, lengths)  # (B, T, F * variable_size)
        unit_lengths = lengths
        for level in self.encoder_levels:
            h, unit_lengths = level(h, unit_lengths)  # (B, ceil(T / L), H)
            h = self.drop(h)
        return self.top_encoder(h, unit_lengths, self.spans()[-1], lengths)

    def decode(self, z: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Latent ``(B, latent_dim)`` and target lengths -> reconstruction ``(B, T, F)``."""
        spans = self.spans()
        level_lengths = [lengths]
        for L in self.chunk_lengths:
            level_lengths.append(torch.div(level_lengths[-1] + L - 1, L, rounding_mode="floor"))
        h = self.top_decoder(z, level_lengths[-1], spans[-1], lengths)
        for i, level in enumerate(self.decoder_levels):
            depth = len(self.chunk_lengths) - 1 - i  # index of the level being expanded into
            h = level(self.drop(h), level_lengths[depth], spans[depth], lengths)
        return self.head(h)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor):
        z = self.encode(x, mask, lengths)
        return self.decode(z, lengths), z

    def level_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Parameters grouped by level of the hierarchy (for gradient diagnostics)."""
        groups: dict[str, list[nn.Parameter]] = {}
        if self.variable_encoder is not None:
            groups["encoder.variables"] = list(self.variable_encoder.parameters())
        for i, level in enumerate(self.encoder_levels):
            groups[f"encoder.level{i + 1}"] = list(level.parameters())
        groups["encoder.top"] = list(self.top_encoder.parameters())
        groups["decoder.top"] = list(self.top_decoder.parameters())
        n = len(self.decoder_levels)
        for i, level in enumerate(self.decoder_levels):
            groups[f"decoder.level{n - i}"] = list(level.parameters())
        groups["decoder.head"] = list(self.head.parameters())
        return groups
