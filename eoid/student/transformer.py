"""CDN's transformer: DETR encoder, a human-object decoder cascaded into an interaction
decoder.

Post-norm layers as DETR (ReLU, dropout), batch-first tensors. Parameter names follow
DETR's (`self_attn`, `multihead_attn`, `linear1`, `norm1`, ...) so a DETR checkpoint
maps by name. The interaction decoder's query positions are the last human-object
decoder output (after its final LayerNorm); `detach` stops the gradient through that
link (EoID's `--vdetach`). The encoder memory is never detached.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sine_position_encoding(
    mask: Tensor, num_feats: int, temperature: float = 10000.0
) -> Tensor:
    """DETR's normalised sine encoding: mask (B, h, w) bool, True = padding -> (B,
    2*num_feats, h, w).

    Coordinates are cumulative counts over non-padded cells, scaled to [0, 2*pi].
    """
    not_mask = (~mask).float()
    y = not_mask.cumsum(1)
    x = not_mask.cumsum(2)
    eps, scale = 1e-6, 2 * math.pi
    y = y / (y[:, -1:, :] + eps) * scale
    x = x / (x[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=mask.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    pos_x, pos_y = x[..., None] / dim_t, y[..., None] / dim_t
    pos_x = torch.stack(
        (pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4
    ).flatten(3)
    pos_y = torch.stack(
        (pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4
    ).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class EncoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(
            d, heads, dropout=dropout, batch_first=True
        )
        self.linear1, self.linear2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout = nn.Dropout(dropout)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, src: Tensor, key_padding_mask: Tensor, pos: Tensor) -> Tensor:
        q = k = src + pos
        src = self.norm1(
            src
            + self.dropout1(
                self.self_attn(
                    q, k, src, key_padding_mask=key_padding_mask, need_weights=False
                )[0]
            )
        )
        ffn = self.linear2(self.dropout(torch.relu(self.linear1(src))))
        return self.norm2(src + self.dropout2(ffn))


class DecoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(
            d, heads, dropout=dropout, batch_first=True
        )
        self.multihead_attn = nn.MultiheadAttention(
            d, heads, dropout=dropout, batch_first=True
        )
        self.linear1, self.linear2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.norm1, self.norm2, self.norm3 = (
            nn.LayerNorm(d),
            nn.LayerNorm(d),
            nn.LayerNorm(d),
        )
        self.dropout = nn.Dropout(dropout)
        self.dropout1, self.dropout2, self.dropout3 = (
            nn.Dropout(dropout) for _ in range(3)
        )

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        memory_padding_mask: Tensor,
        pos: Tensor,
        query_pos: Tensor,
        attn_bias: Tensor | None = None,
    ) -> Tensor:
        """attn_bias (B * heads, Q, S): added to the cross-attention logits; it must
        then hold -inf at padded keys itself (memory_padding_mask is not used)."""
        q = k = tgt + query_pos
        tgt = self.norm1(
            tgt + self.dropout1(self.self_attn(q, k, tgt, need_weights=False)[0])
        )
        attn = self.multihead_attn(
            tgt + query_pos,
            memory + pos,
            memory,
            key_padding_mask=memory_padding_mask if attn_bias is None else None,
            attn_mask=attn_bias,
            need_weights=False,
        )[0]
        tgt = self.norm2(tgt + self.dropout2(attn))
        ffn = self.linear2(self.dropout(torch.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout3(ffn))


class Encoder(nn.Module):
    def __init__(self, num_layers: int, d: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(d, heads, ffn, dropout) for _ in range(num_layers)
        )

    def forward(self, src: Tensor, key_padding_mask: Tensor, pos: Tensor) -> Tensor:
        for layer in self.layers:
            src = layer(src, key_padding_mask, pos)
        return src


class Decoder(nn.Module):
    """Stack of decoder layers starting from zero targets; returns every layer's normed
    output.
    """

    def __init__(self, num_layers: int, d: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderLayer(d, heads, ffn, dropout) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d)

    def forward(
        self,
        memory: Tensor,
        memory_padding_mask: Tensor,
        pos: Tensor,
        query_pos: Tensor,
        attn_bias: Tensor | None = None,
    ) -> Tensor:
        """memory (B, S, D), query_pos (B, Q, D) -> (L, B, Q, D) intermediate outputs.

        attn_bias: optional (B * heads, Q, S) cross-attention bias of every layer
        (see DecoderLayer)."""
        tgt = torch.zeros_like(query_pos)
        outs = []
        for layer in self.layers:
            tgt = layer(tgt, memory, memory_padding_mask, pos, query_pos, attn_bias)
            outs.append(self.norm(tgt))
        return torch.stack(outs)


class CascadeTransformer(nn.Module):
    """Encoder + human-object decoder -> interaction decoder (CDN's cascade)."""

    def __init__(
        self,
        d: int,
        heads: int,
        ffn: int,
        dropout: float,
        enc_layers: int,
        dec_layers_ho: int,
        dec_layers_interaction: int,
        detach: bool,
    ):
        super().__init__()
        self.encoder = Encoder(enc_layers, d, heads, ffn, dropout)
        self.decoder = Decoder(dec_layers_ho, d, heads, ffn, dropout)
        self.interaction_decoder = Decoder(
            dec_layers_interaction, d, heads, ffn, dropout
        )
        self.detach = detach
        for p in self.parameters():  # DETR's _reset_parameters
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(
        self,
        src: Tensor,
        mask: Tensor,
        query_embed: Tensor,
        pos: Tensor,
        attn_bias: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """src, pos (B, D, h, w); mask (B, h, w) True = padding; query_embed (Q, D);
        attn_bias: optional (B * heads, Q, h * w) cross-attention bias of both decoders.

        Returns (ho_out (L_ho, B, Q, D), interaction_out (L_int, B, Q, D)).
        """
        batch = src.shape[0]
        src = src.flatten(2).transpose(1, 2)
        pos = pos.flatten(2).transpose(1, 2)
        mask = mask.flatten(1)
        memory = self.encoder(src, mask, pos)
        query_pos = query_embed[None].expand(batch, -1, -1)
        ho_out = self.decoder(memory, mask, pos, query_pos, attn_bias)
        interaction_pos = ho_out[-1].detach() if self.detach else ho_out[-1]
        interaction_out = self.interaction_decoder(
            memory, mask, pos, interaction_pos, attn_bias
        )
        return ho_out, interaction_out
