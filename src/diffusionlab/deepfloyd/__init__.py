"""DeepFloyd IF stage I (64 px) and stage II (x4 super-resolution) behind the project's model protocol.

Optional extra: `pip install -e ".[deepfloyd]"`; diffusers and transformers are imported inside functions only.
Imported by diffusionlab.backends only (`--model deepfloyd[:variant]` or an IF folder), never by the core.

- weights.py   model ids, --model-dir and the Hugging Face cache, from_pretrained from disk, config checks
- prompts.py   prompts -> T5 embeddings: --prompt-embeds, the disk cache, then T5 (loaded, released)
- adapters.py  IFModel (stage I) and IFStage2 behind the protocol; GpuSlot (--offload turns)
- loading.py   load_deepfloyd, load_stage2

The algorithms that run on them are outside this package: sampling.denoise, guidance, and diffusionlab.upscale
(stage II's x4 upsampling).
"""

from diffusionlab.deepfloyd.adapters import GpuSlot, IFAdapter, IFModel, IFStage2
from diffusionlab.deepfloyd.loading import load_deepfloyd, load_stage2
from diffusionlab.deepfloyd.prompts import MAX_LENGTH, PromptEncoder, load_prompt_embeds, t5_cache_dir
from diffusionlab.deepfloyd.weights import (
    STAGE1_DEFAULT,
    STAGE1_SHORT,
    STAGE2_DEFAULT,
    T5_GB,
    UNET_GB,
    check_unet_config,
    locate,
    missing_weights_message,
    resolve_model_id,
    sampler_defaults,
    scheduler_timesteps,
    wrong_stage_message,
)

__all__ = [
    "MAX_LENGTH",
    "STAGE1_DEFAULT",
    "STAGE1_SHORT",
    "STAGE2_DEFAULT",
    "T5_GB",
    "UNET_GB",
    "GpuSlot",
    "IFAdapter",
    "IFModel",
    "IFStage2",
    "PromptEncoder",
    "check_unet_config",
    "load_deepfloyd",
    "load_prompt_embeds",
    "load_stage2",
    "locate",
    "missing_weights_message",
    "resolve_model_id",
    "sampler_defaults",
    "scheduler_timesteps",
    "t5_cache_dir",
    "wrong_stage_message",
]
