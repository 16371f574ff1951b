"""Third-party library setup shared by everything that imports torch or diffusers."""

from __future__ import annotations

import logging
import os
import warnings


def quiet() -> None:
    """Silence diffusers/transformers logs and tqdm bars: vidgen reports progress itself."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for lib in (diffusers_logging, transformers_logging):
        # Errors too: diffusers logs a failed LoRA load in full before raising, and vidgen turns
        # the exception into its own one-line message.
        lib.set_verbosity(lib.CRITICAL)
        lib.disable_progress_bar()
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:  # older hubs lack it; their bars are harmless
        pass
    # diffusers imports torchao whenever it is installed (the quantize extra): torchao then warns
    # that its CUDA kernels do not load on a CPU build, and torch about the pytree constants it
    # registers. Neither is anything a vidgen user can act on.
    logging.getLogger("torchao").setLevel(logging.ERROR)
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    # The CLIP image processor warns on every load when torchvision is absent (it is, on CPU).
    warnings.filterwarnings("ignore", message=".*torchvision.*")
    # Library-internal deprecation chatter (torch.meshgrid indexing, grid_sample align_corners in
    # the deprecated Text2Video-Zero code) says nothing a vidgen user can act on.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(torch|diffusers)(\.|$)")
    # MiniMax-H3's audio VAE in diffusers builds with the deprecated torch.nn.utils.weight_norm,
    # which warns on every load; again nothing a vidgen user can act on.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.nn\.utils\.weight_norm")
