"""Loading DeepFloyd IF's stages onto a device: resolve the model, find its files (weights.py), check the UNet's
config, load the scheduler, then the UNet's weights (the heavy part, last); stage I gets the loader of its stage II.

Optional extra: `pip install -e ".[deepfloyd]"` (diffusers, transformers, sentencepiece, accelerate). diffusers is
used to *load* the networks and the scheduler configuration; the sampling loop is ours (`sampling.denoise`).
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import torch

from diffusionlab.deepfloyd.adapters import GpuSlot, IFModel, IFStage2
from diffusionlab.deepfloyd.prompts import PromptEncoder, load_prompt_embeds
from diffusionlab.deepfloyd.weights import (
    STAGE1_DEFAULT,
    STAGE2_DEFAULT,
    check_unet_config,
    load_pretrained,
    load_scheduler,
    locate,
    oom_message,
    read_unet_config,
    require_extra,
    resolve_model_id,
)
from diffusionlab.errors import DiffusionLabError
from diffusionlab.model_protocol import default_device


def warn_cpu() -> None:
    """Said by each loader call that puts IF on a CPU (a stage II loaded for its stage I does not repeat it)."""
    print(
        "warning: DeepFloyd IF on the CPU runs in float32: expect minutes per image and 20+ GB of RAM for IF-I-XL "
        "(a CUDA GPU with 16 GB, or --offload on a smaller one, is the intended setup)",
        file=sys.stderr,
    )


def device_dtype(device) -> tuple[torch.device, torch.dtype]:
    """fp16 on a GPU; float32 on the CPU (with a warning)."""
    dev = torch.device(device) if device is not None and str(device) != "auto" else default_device()
    if dev.type == "cuda":
        return dev, torch.float16
    warn_cpu()
    return dev, torch.float32


def to_device(module: torch.nn.Module, device: torch.device, offload: bool, what: str):
    """Move to the device, or (offload) keep on the CPU with an accelerate hook; returns (module, hook)."""
    if offload and device.type == "cuda":
        from accelerate import cpu_offload_with_hook

        return cpu_offload_with_hook(module, execution_device=device)
    try:
        return module.to(device), None
    except torch.cuda.OutOfMemoryError:
        raise DiffusionLabError(oom_message(f"loading the {what}")) from None


class _Stage(NamedTuple):
    """What loading either stage starts with: where its files are, its scheduler, its UNet on the device."""

    model_id: str
    source: Any
    extra: Any
    device: torch.device
    dtype: torch.dtype
    scheduler: Any
    unet: Any
    hook: Any

    def prompt_encoder(self, model_dir, known, offload: bool) -> PromptEncoder:
        hid = int(self.unet.config.encoder_hid_dim or 4096)
        return PromptEncoder(
            self.source, self.extra, self.model_id, model_dir, self.device, self.dtype, hid, known, offload
        )


def _open_stage(
    spec: str, default: str, stage: str, in_channels: int, dev, dtype, model_dir, offload: bool, prompt_width=None
) -> _Stage:
    """Resolve the model, find its files, check its UNet's config (this stage's, learned variance, prompt width),
    load its scheduler, then the UNet's weights (the heavy part, last) to the device."""
    from diffusers import UNet2DConditionModel

    model_id = resolve_model_id(spec, default)
    source, extra = locate(model_id, model_dir, in_channels=in_channels)
    check_unet_config(read_unet_config(source, extra, model_id, model_dir), model_id, stage, in_channels, prompt_width)
    scheduler = load_scheduler(source, "scheduler", extra, model_id, model_dir)
    unet = load_pretrained(UNet2DConditionModel, source, "unet", dtype, extra, model_id, model_dir)
    unet, hook = to_device(unet, dev, offload, f"stage {stage} UNet")
    return _Stage(model_id, source, extra, dev, dtype, scheduler, unet, hook)


def load_deepfloyd(
    spec: str = "deepfloyd",
    device: str | torch.device | None = None,
    model_dir: str | Path | None = None,
    prompt_embeds: str | Path | dict | None = None,
    offload: bool = False,
) -> IFModel:
    """--model deepfloyd[:<IF-I-XL-v1.0 | IF-I-L-v1.0 | IF-I-M-v1.0 | hub id | local dir>] -> stage I model."""
    known = load_prompt_embeds(prompt_embeds) if isinstance(prompt_embeds, (str, Path)) else prompt_embeds
    width = next((int(v.shape[-1]) for v in (known or {}).values()), None)
    require_extra()
    dev, dtype = device_dtype(device)
    st = _open_stage(spec, STAGE1_DEFAULT, "I", 3, dev, dtype, model_dir, offload, prompt_width=width)
    prompts = st.prompt_encoder(model_dir, known, offload)
    where = model_dir
    if where is None and Path(st.model_id).is_absolute():
        where = Path(st.model_id).parent  # stage I given as a folder: look for IF-II-L-v1.0 beside it
    slot = GpuSlot()  # stage I and its stage II take turns on the GPU under --offload
    stage2_loader = partial(
        _load_stage2, dev=st.device, dtype=st.dtype, model_dir=where, prompts=prompts, offload=offload, slot=slot
    )
    return IFModel(
        st.unet, st.scheduler, prompts, st.device, st.dtype, st.model_id, hook=st.hook, slot=slot,
        model_dir=model_dir, offload=offload, stage2_loader=stage2_loader,
    )  # fmt: skip


def load_stage2(
    spec: str = STAGE2_DEFAULT,
    device: str | torch.device | None = None,
    model_dir: str | Path | None = None,
    prompts: PromptEncoder | None = None,
    offload: bool = False,
    slot: GpuSlot | None = None,
) -> IFStage2:
    """Stage II (`DeepFloyd/IF-II-L-v1.0` by default); prompts: the stage-I model's encoder (shared T5 cache),
    slot: its GPU slot (shared turns under --offload)."""
    require_extra()
    dev, dtype = device_dtype(device)
    return _load_stage2(spec, dev, dtype, model_dir, prompts, offload, slot)


def _load_stage2(
    spec: str, dev, dtype, model_dir, prompts: PromptEncoder | None, offload: bool, slot: GpuSlot | None
) -> IFStage2:
    st = _open_stage(spec, STAGE2_DEFAULT, "II", 6, dev, dtype, model_dir, offload)
    noising = load_scheduler(st.source, "image_noising_scheduler", st.extra, st.model_id, model_dir)
    if prompts is None:
        prompts = st.prompt_encoder(model_dir, None, offload)
    return IFStage2(st.unet, st.scheduler, noising, prompts, st.device, st.dtype, st.model_id, hook=st.hook, slot=slot)
