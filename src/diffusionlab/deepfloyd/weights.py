"""Finding and reading DeepFloyd IF's files: model ids, --model-dir and the Hugging Face cache, from disk only.

`--model-dir` may be the pipeline folder itself, a folder holding `IF-I-XL-v1.0/`, `IF-II-L-v1.0/`, ... (as written
by `hf download DeepFloyd/IF-I-XL-v1.0 --local-dir DIR/IF-I-XL-v1.0`), or a Hugging Face cache folder.
The UNet's config is read and checked before its weights (gigabytes) are; the scheduler's config becomes the
sampler's settings. diffusers and transformers are imported inside the functions only.
"""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from diffusionlab.errors import DiffusionLabError

STAGE1_DEFAULT = "DeepFloyd/IF-I-XL-v1.0"
STAGE2_DEFAULT = "DeepFloyd/IF-II-L-v1.0"
STAGE1_SHORT = MappingProxyType(
    {"xl": "DeepFloyd/IF-I-XL-v1.0", "l": "DeepFloyd/IF-I-L-v1.0", "m": "DeepFloyd/IF-I-M-v1.0"}
)
# fp16 UNet download sizes, roughly (GB); the T5-XXL text encoder is about 9.5 GB more in fp16.
UNET_GB = MappingProxyType(
    {"IF-I-XL-v1.0": 8.6, "IF-I-L-v1.0": 1.8, "IF-I-M-v1.0": 0.8, "IF-II-L-v1.0": 2.5, "IF-II-M-v1.0": 0.9}
)
T5_GB = 9.5


def require_extra() -> None:
    try:
        import diffusers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise DiffusionLabError(
            f"DeepFloyd IF needs the optional extra ({e.name} is missing): pip install 'diffusionlab[deepfloyd]'"
        ) from None


def oom_message(what: str) -> str:
    return (
        f"out of GPU memory while {what}; try --offload (model CPU offload), fewer images at once, "
        "or a smaller stage I (--model deepfloyd:IF-I-L-v1.0 or deepfloyd:IF-I-M-v1.0)"
    )


def first_line(e: Exception) -> str:
    text = (str(e).strip().splitlines() or [""])[0][:200]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# -- model ids and folders ----------------------------------------------------------------------------------------
def resolve_model_id(spec: str, default: str = STAGE1_DEFAULT) -> str:
    """ "deepfloyd" -> the default; "deepfloyd:IF-I-L-v1.0" / ":L" / ":DeepFloyd/IF-I-M-v1.0" / ":/a/dir"."""
    name = spec.split(":", 1)[1].strip() if spec.startswith("deepfloyd:") else spec.strip()
    if name in ("", "deepfloyd"):
        return default
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser().resolve())
    if name.lower() in STAGE1_SHORT:
        return STAGE1_SHORT[name.lower()]
    if "/" not in name:
        return f"DeepFloyd/{name}"
    return name


def hub_folder(cache: str | Path, model_id: str) -> Path:
    """Where a Hugging Face cache keeps a model id: <cache>/models--DeepFloyd--IF-I-XL-v1.0."""
    return Path(cache) / ("models--" + model_id.replace("/", "--"))


def cached_stage1(cache: str | Path) -> str | None:
    """The first stage I variant (XL, L, M) whose UNet weights are in the Hugging Face cache, e.g. "IF-I-XL-v1.0",
    or None. Only looks at the files; nothing is loaded."""
    for model_id in STAGE1_SHORT.values():
        snapshots = hub_folder(cache, model_id) / "snapshots"
        for snap in snapshots.iterdir() if snapshots.is_dir() else ():
            unet = snap / "unet"
            if unet.is_dir() and any(p.suffix in (".safetensors", ".bin") for p in unet.iterdir()):
                return model_id.split("/")[1]
    return None


def missing_weights_message(model_id: str, model_dir: str | Path | None, what: str = "weights") -> str:
    name = model_id.rstrip("/").split("/")[-1]
    where = f"in {model_dir} or the Hugging Face cache" if model_dir else "in the Hugging Face cache"
    if Path(model_id).is_absolute():
        return (
            f"DeepFloyd IF {what} not found in {model_id} (need unet/ and scheduler/ folders, plus text_encoder/ and "
            "tokenizer/ for prompts not in --prompt-embeds)"
        )
    size = UNET_GB.get(name)
    size_s = f"about {size:g} GB in fp16" if size else "several GB"
    t5 = (
        f" plus {T5_GB:g} GB for the T5 text encoder unless --prompt-embeds holds your prompts"
        if "IF-I" in name
        else ""
    )
    return (
        f"DeepFloyd IF {what} for {model_id} not found {where}: accept the licence on "
        f"https://huggingface.co/DeepFloyd/IF-I-XL-v1.0 (logged in), run `hf auth login`, then "
        f"`hf download {model_id}` ({size_s}{t5}; offline runs need them on disk), or pass --model-dir"
    )


def wrong_stage_message(where: str, stage: str, in_channels: int) -> str:
    """A UNet of the other IF stage (stage I takes 3 input channels, stage II 6: the image and the low-res one)."""
    found = {3: "stage I", 6: "stage II"}.get(in_channels, "no IF stage")
    wanted = "IF-I-XL-v1.0, IF-I-L-v1.0 or IF-I-M-v1.0" if stage == "I" else "IF-II-L-v1.0 or IF-II-M-v1.0"
    return (
        f"this is {found}: {where} is not an IF stage-{stage} model (its UNet takes {in_channels} channels); "
        f"give the folder of {wanted}"
    )


def _unet_in_channels(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / "unet" / "config.json").read_text())["in_channels"])
    except (OSError, ValueError, KeyError):
        return None


def locate(model_id: str, model_dir: str | Path | None, in_channels: int) -> tuple[str, dict]:
    """model id (+ --model-dir) -> (what from_pretrained gets, extra kwargs such as cache_dir)."""
    if Path(model_id).is_absolute():
        if not (Path(model_id) / "unet" / "config.json").is_file():
            raise DiffusionLabError(missing_weights_message(model_id, None))
        return model_id, {}  # a config there that cannot be read is reported by read_unet_config
    if model_dir is None:
        return model_id, {}
    root = Path(model_dir).expanduser()
    if not root.is_dir():
        raise DiffusionLabError(f"--model-dir {root}: no such folder")
    name = model_id.split("/")[-1]
    for cand in (root / name, root / model_id, root):
        if _unet_in_channels(cand) == in_channels:
            return str(cand.resolve()), {}
    if hub_folder(root, model_id).is_dir():
        return model_id, {"cache_dir": str(root)}
    # a folder named for this model, or (stage I asked for) --model-dir itself, holding a UNet of another stage
    named = [root / name, root / model_id] + ([root] if in_channels == 3 else [])
    for cand in named:
        if _unet_in_channels(cand) is not None:
            stage = "I" if in_channels == 3 else "II"
            raise DiffusionLabError(wrong_stage_message(str(cand), stage, _unet_in_channels(cand)))
    return model_id, {}  # not under --model-dir: the Hugging Face cache (the error names both)


@contextmanager
def quiet_library_warnings():
    """diffusers/transformers/huggingface_hub deprecation notices about their own internals (e.g. hf_hub_download's
    `local_dir_use_symlinks`) say nothing a user of this tool can act on: keep them off the terminal."""
    with warnings.catch_warnings():
        for category in (FutureWarning, DeprecationWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category, module=r"(diffusers|transformers|huggingface_hub)\.")
        yield


# -- from_pretrained, from disk only ------------------------------------------------------------------------------
def _takes_dtype(cls: Any) -> bool:
    """transformers >= 4.56 spells it `dtype` (torch_dtype is deprecated); diffusers keeps `torch_dtype`."""
    if not cls.__module__.startswith("transformers"):
        return False
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return (major, minor) >= (4, 56)


def load_pretrained(
    cls: Any, source: str, subfolder: str, dtype: torch.dtype, extra: dict, model_id: str, model_dir
) -> Any:
    """from_pretrained from disk only; fp16 variant files first on the GPU, full precision first on the CPU."""
    variants = ["fp16", None] if dtype == torch.float16 else [None, "fp16"]
    errors: list[Exception] = []
    for variant in variants:
        kwargs = dict(subfolder=subfolder, local_files_only=True, **extra)
        if variant:
            kwargs["variant"] = variant
        kwargs["dtype" if _takes_dtype(cls) else "torch_dtype"] = dtype
        try:
            with quiet_library_warnings():
                return cls.from_pretrained(source, **kwargs)
        except Exception as e:  # noqa: BLE001 - a missing variant, or a broken file: sorted out below
            errors.append(e)
    what = {"unet": "UNet weights", "text_encoder": "T5 text encoder"}.get(subfolder, subfolder)
    # a variant whose weight files are there but would not load is broken, not missing
    broken = [e for v, e in zip(variants, errors, strict=True) if _has_weights(source, subfolder, v)]
    if broken:
        raise DiffusionLabError(f"{model_id}: cannot load its {what} ({first_line(broken[0])})") from None
    raise DiffusionLabError(missing_weights_message(model_id, model_dir, what)) from errors[-1]


def _has_weights(source: str, subfolder: str, variant: str | None) -> bool:
    folder = Path(source) / subfolder
    names = [p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")] if folder.is_dir() else []
    return any((".fp16." in name) == (variant == "fp16") for name in names)


def _has_files(source: str, subfolder: str) -> bool:
    folder = Path(source) / subfolder
    return folder.is_dir() and any(folder.iterdir())


# -- the UNet's config and the schedulers -------------------------------------------------------------------------
def read_unet_config(source: str, extra: dict, model_id: str, model_dir) -> dict:
    """The UNet's config.json alone (no weights): enough to check the model before loading gigabytes."""
    from diffusers import UNet2DConditionModel

    try:
        return dict(UNet2DConditionModel.load_config(source, subfolder="unet", local_files_only=True, **extra))
    except Exception as e:  # noqa: BLE001 - missing, or not a JSON diffusers can read
        if _has_files(source, "unet"):
            raise DiffusionLabError(f"{model_id}: cannot read its unet/config.json ({first_line(e)})") from None
        raise DiffusionLabError(missing_weights_message(model_id, model_dir, "UNet weights")) from e


def check_unet_config(config: dict, model_id: str, stage: str, in_channels: int, prompt_width: int | None) -> None:
    """The UNet is this stage's (3 input channels for stage I, 6 for II), predicts IF's learned variance (6 output
    channels: 3 noise + 3 variance values, which the sampler needs) and takes prompts as wide as --prompt-embeds."""
    if config.get("in_channels") != in_channels:
        raise DiffusionLabError(wrong_stage_message(model_id, stage, config.get("in_channels")))
    if config.get("out_channels") != 6:
        raise DiffusionLabError(
            f"{model_id}: its UNet has {config.get('out_channels')} output channels; an IF UNet has 6 "
            "(3 for the noise and 3 for the learned variance the sampler uses)"
        )
    width = int(config.get("encoder_hid_dim") or 4096)
    if prompt_width is not None and prompt_width != width:
        raise DiffusionLabError(
            f"--prompt-embeds: the embeddings have width {prompt_width} but this IF UNet takes {width} "
            "(embeddings of another text encoder?)"
        )


def load_scheduler(source: str, subfolder: str, extra: dict, model_id: str, model_dir) -> Any:
    from diffusers import DDPMScheduler

    try:
        with quiet_library_warnings():
            scheduler = DDPMScheduler.from_pretrained(source, subfolder=subfolder, local_files_only=True, **extra)
        scheduler_timesteps(scheduler, 10)  # a config it builds but cannot space steps with fails now
        return scheduler
    except Exception as e:  # noqa: BLE001 - missing, or a config diffusers cannot build (NotImplementedError ...)
        if _has_files(source, subfolder):
            raise DiffusionLabError(
                f"{model_id}: diffusers cannot build its {subfolder} from the config ({first_line(e)})"
            ) from None
        raise DiffusionLabError(missing_weights_message(model_id, model_dir)) from e


def sampler_defaults(scheduler: Any, value_range: tuple[float, float] = (-1.0, 1.0)) -> dict:
    """The scheduler's config as `sampling.denoise` keyword arguments (variance, threshold, clip)."""
    cfg = scheduler.config
    variance = {
        "learned_range": "learned-range",
        "fixed_small": "beta-tilde",
        "fixed_small_log": "beta-tilde",
        "fixed_large": "beta",
        "fixed_large_log": "beta",
    }.get(cfg.variance_type, "auto")
    threshold = (float(cfg.dynamic_thresholding_ratio), float(cfg.sample_max_value)) if cfg.thresholding else None
    return {"variance": variance, "threshold": threshold, "clip": bool(cfg.clip_sample) and threshold is None}


def scheduler_timesteps(scheduler: Any, num_steps: int) -> list[int]:
    """IF's own timesteps for num_steps steps (the pipelines' default spacing), highest first."""
    from diffusers import DDPMScheduler

    fresh = DDPMScheduler.from_config(scheduler.config)
    fresh.set_timesteps(int(num_steps))
    return [int(t) for t in fresh.timesteps]
