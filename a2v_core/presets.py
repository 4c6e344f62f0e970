"""Architecture presets: every ``ModelConfig`` field a preset fills when the YAML does not."""

from __future__ import annotations

from typing import Any

# Layer spec of the conv feature stack: (channels, kernel, stride).
ConvLayer = tuple[int, int, int]

_LARGE_CONV: list[ConvLayer] = (
    [(512, 10, 5)] + [(512, 3, 2)] * 3 + [(512, 3, 1)] + [(512, 2, 1)] * 2
)

#: Architecture presets. Numbers of ``large`` follow the released MeerKAT recipe
#: (animal2vec_spec.md sections 2-3); ``base`` is the 768-wide hyena/Xeno-canto model.
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        sinc_filters=24,
        sinc_taps=63,
        conv_layers=[(48, 10, 5), (48, 3, 2), (48, 3, 2), (48, 3, 2)],
        width=64,
        heads=2,
        ffn_dim=192,
        prenet_depth=0,
        depth=2,
        conv_pos_depth=2,
        conv_pos_width=10,
        conv_pos_groups=4,
        decoder_dim=64,
        decoder_layers=2,
        decoder_kernel=7,
        decoder_groups=4,
        average_top_k_layers=2,
        clone_batch=4,
        learned_alibi_scale=False,
    ),
    "base": dict(
        sinc_filters=127,
        sinc_taps=63,
        conv_layers=_LARGE_CONV,
        width=768,
        heads=12,
        ffn_dim=3072,
        prenet_depth=0,
        depth=12,
        conv_pos_depth=5,
        conv_pos_width=95,
        conv_pos_groups=16,
        decoder_dim=384,
        decoder_layers=4,
        decoder_kernel=7,
        decoder_groups=16,
        average_top_k_layers=12,
        clone_batch=8,
    ),
    "large": dict(
        sinc_filters=127,
        sinc_taps=63,
        conv_layers=_LARGE_CONV,
        width=1024,
        heads=16,
        ffn_dim=4096,
        prenet_depth=8,
        depth=16,
        conv_pos_depth=5,
        conv_pos_width=95,
        conv_pos_groups=16,
        decoder_dim=768,
        decoder_layers=4,
        decoder_kernel=7,
        decoder_groups=16,
        average_top_k_layers=16,
        clone_batch=12,
    ),
}
