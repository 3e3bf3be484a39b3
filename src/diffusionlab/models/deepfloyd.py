"""DeepFloyd IF stage I (64 px) and stage II (x4 super-resolution) behind the project's model protocol.

Optional extra: `pip install -e ".[deepfloyd]"` (diffusers, transformers, sentencepiece, accelerate). Those are
imported inside functions only, so `import diffusionlab` never needs them. diffusers is used to *load* the
networks and the scheduler configuration; the sampling loop is ours (`sampling.denoise`), for both stages.

Weights are read from disk only (`local_files_only`): the Hugging Face cache, or `--model-dir`, which may be
the pipeline folder itself, a folder holding `IF-I-XL-v1.0/`, `IF-II-L-v1.0/`, ... (as written by
`huggingface-cli download DeepFloyd/IF-I-XL-v1.0 --local-dir DIR/IF-I-XL-v1.0`), or a Hugging Face cache folder.

Prompts: T5 embeddings are cached on disk (safetensors, keyed by model id and prompt) under
`$DIFFUSIONLAB_CACHE/t5` (default `~/.cache/diffusionlab/t5`). The T5 encoder is loaded only for prompts that are
neither in `--prompt-embeds` nor in the cache, and released right after.

Stage II is a protocol model too: its `predict` closes over the noised, upsampled stage-I images (the UNet sees
cat([x_t, low_res]) and the noise level as class label), so CFG, anagram and hybrid estimators and the one
`denoise` loop work on it unchanged.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from diffusionlab.errors import DiffusionLabError
from diffusionlab.model import Prediction, default_device
from diffusionlab.schedule import NoiseSchedule, add_noise

STAGE1_DEFAULT = "DeepFloyd/IF-I-XL-v1.0"
STAGE2_DEFAULT = "DeepFloyd/IF-II-L-v1.0"
STAGE1_SHORT = {"xl": "DeepFloyd/IF-I-XL-v1.0", "l": "DeepFloyd/IF-I-L-v1.0", "m": "DeepFloyd/IF-I-M-v1.0"}
# fp16 UNet download sizes, roughly (GB); the T5-XXL text encoder is about 9.5 GB more in fp16.
UNET_GB = {"IF-I-XL-v1.0": 8.6, "IF-I-L-v1.0": 1.8, "IF-I-M-v1.0": 0.8, "IF-II-L-v1.0": 2.5, "IF-II-M-v1.0": 0.9}
T5_GB = 9.5
MAX_LENGTH = 77

_warned: set[str] = set()
_active_hook: dict[str, Any] = {"hook": None}  # model CPU offload: the one IF network now on the GPU


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        print(f"warning: {message}", file=sys.stderr)


def _require_extra() -> None:
    try:
        import diffusers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise DiffusionLabError(
            f"DeepFloyd IF needs the optional extra ({e.name} is missing): pip install 'diffusionlab[deepfloyd]'"
        ) from None


def _oom_message(what: str) -> str:
    return (
        f"out of GPU memory while {what}; try --offload (model CPU offload), fewer images at once, "
        "or a smaller stage I (--model deepfloyd:IF-I-L-v1.0 or deepfloyd:IF-I-M-v1.0)"
    )


# -- finding the weights --------------------------------------------------------------------------------------
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
        f"https://huggingface.co/DeepFloyd/IF-I-XL-v1.0 (logged in), run `huggingface-cli login`, then "
        f"`huggingface-cli download {model_id}` ({size_s}{t5}; offline runs need them on disk), or pass --model-dir"
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
        return model_id, {}  # a config there that cannot be read is reported by _unet_config
    if model_dir is None:
        return model_id, {}
    root = Path(model_dir).expanduser()
    if not root.is_dir():
        raise DiffusionLabError(f"--model-dir {root}: no such folder")
    name = model_id.split("/")[-1]
    for cand in (root / name, root / model_id, root):
        if _unet_in_channels(cand) == in_channels:
            return str(cand.resolve()), {}
    if (root / ("models--" + model_id.replace("/", "--"))).is_dir():
        return model_id, {"cache_dir": str(root)}
    # a folder named for this model, or (stage I asked for) --model-dir itself, holding a UNet of another stage
    named = [root / name, root / model_id] + ([root] if in_channels == 3 else [])
    for cand in named:
        if _unet_in_channels(cand) is not None:
            stage = "I" if in_channels == 3 else "II"
            raise DiffusionLabError(wrong_stage_message(str(cand), stage, _unet_in_channels(cand)))
    return model_id, {}  # not under --model-dir: the Hugging Face cache (the error names both)


def wrong_stage_message(where: str, stage: str, in_channels: int) -> str:
    """A UNet of the other IF stage (stage I takes 3 input channels, stage II 6: the image and the low-res one)."""
    found = {3: "stage I", 6: "stage II"}.get(in_channels, "no IF stage")
    wanted = "IF-I-XL-v1.0, IF-I-L-v1.0 or IF-I-M-v1.0" if stage == "I" else "IF-II-L-v1.0 or IF-II-M-v1.0"
    return (
        f"this is {found}: {where} is not an IF stage-{stage} model (its UNet takes {in_channels} channels); "
        f"give the folder of {wanted}"
    )


def _takes_dtype(cls: Any) -> bool:
    """transformers >= 4.56 spells it `dtype` (torch_dtype is deprecated); diffusers keeps `torch_dtype`."""
    if not cls.__module__.startswith("transformers"):
        return False
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return (major, minor) >= (4, 56)


def _load(cls: Any, source: str, subfolder: str, dtype: torch.dtype, extra: dict, model_id: str, model_dir) -> Any:
    """from_pretrained from disk only; fp16 variant files first on the GPU, full precision first on the CPU."""
    variants = ["fp16", None] if dtype == torch.float16 else [None, "fp16"]
    errors: list[Exception] = []
    for variant in variants:
        kwargs = dict(subfolder=subfolder, local_files_only=True, **extra)
        if variant:
            kwargs["variant"] = variant
        kwargs["dtype" if _takes_dtype(cls) else "torch_dtype"] = dtype
        try:
            return cls.from_pretrained(source, **kwargs)
        except Exception as e:  # noqa: BLE001 - a missing variant, or a broken file: sorted out below
            errors.append(e)
    what = {"unet": "UNet weights", "text_encoder": "T5 text encoder"}.get(subfolder, subfolder)
    # a variant whose weight files are there but would not load is broken, not missing
    broken = [e for v, e in zip(variants, errors, strict=True) if _has_weights(source, subfolder, v)]
    if broken:
        raise DiffusionLabError(f"{model_id}: cannot load its {what} ({_first_line(broken[0])})") from None
    raise DiffusionLabError(missing_weights_message(model_id, model_dir, what)) from errors[-1]


def _has_weights(source: str, subfolder: str, variant: str | None) -> bool:
    folder = Path(source) / subfolder
    names = [p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")] if folder.is_dir() else []
    return any((".fp16." in name) == (variant == "fp16") for name in names)


def _has_files(source: str, subfolder: str) -> bool:
    folder = Path(source) / subfolder
    return folder.is_dir() and any(folder.iterdir())


def _first_line(e: Exception) -> str:
    text = (str(e).strip().splitlines() or [""])[0][:200]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _unet_config(source: str, extra: dict, model_id: str, model_dir) -> dict:
    """The UNet's config.json alone (no weights): enough to check the model before loading gigabytes."""
    from diffusers import UNet2DConditionModel

    try:
        return dict(UNet2DConditionModel.load_config(source, subfolder="unet", local_files_only=True, **extra))
    except Exception as e:  # noqa: BLE001 - missing, or not a JSON diffusers can read
        if _has_files(source, "unet"):
            raise DiffusionLabError(f"{model_id}: cannot read its unet/config.json ({_first_line(e)})") from None
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


def _load_scheduler(source: str, subfolder: str, extra: dict, model_id: str, model_dir) -> Any:
    from diffusers import DDPMScheduler

    try:
        scheduler = DDPMScheduler.from_pretrained(source, subfolder=subfolder, local_files_only=True, **extra)
        scheduler_timesteps(scheduler, 10)  # a config it builds but cannot space steps with fails now
        return scheduler
    except Exception as e:  # noqa: BLE001 - missing, or a config diffusers cannot build (NotImplementedError ...)
        if _has_files(source, subfolder):
            raise DiffusionLabError(
                f"{model_id}: diffusers cannot build its {subfolder} from the config ({_first_line(e)})"
            ) from None
        raise DiffusionLabError(missing_weights_message(model_id, model_dir)) from e


def _to_device(module: torch.nn.Module, device: torch.device, offload: bool, what: str):
    """Move to the device, or (offload) keep on the CPU with an accelerate hook; returns (module, hook)."""
    if offload and device.type == "cuda":
        from accelerate import cpu_offload_with_hook

        return cpu_offload_with_hook(module, execution_device=device)
    try:
        return module.to(device), None
    except torch.cuda.OutOfMemoryError:
        raise DiffusionLabError(_oom_message(f"loading the {what}")) from None


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


# -- prompts: T5 embeddings, cached ----------------------------------------------------------------------------
def t5_cache_dir() -> Path:
    base = os.environ.get("DIFFUSIONLAB_CACHE")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "diffusionlab") / "t5"


def load_prompt_embeds(path: str | Path) -> dict[str, Tensor]:
    """The course's precomputed {prompt: (1, 77, 4096)} dictionary, loaded without executing pickled code."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DiffusionLabError(f"--prompt-embeds {p}: no such file")
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling problem is the user's file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DiffusionLabError(f"--prompt-embeds {p}: not a safe torch dict of tensors ({first})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in data.items()):
        raise DiffusionLabError(f"--prompt-embeds {p}: expected a dict {{prompt: tensor (1, 77, 4096)}}")
    out = {}
    for k, v in data.items():
        v = v.unsqueeze(0) if v.dim() == 2 else v
        if v.dim() != 3 or v.shape[:2] != (1, MAX_LENGTH) or not v.is_floating_point():
            raise DiffusionLabError(
                f"--prompt-embeds {p}: {k!r} is a {str(v.dtype).removeprefix('torch.')} tensor of shape "
                f"{tuple(v.shape)}; expected floats of shape (1, {MAX_LENGTH}, 4096), T5 embeddings as the course ships"
            )
        out[k] = v
    widths = sorted({v.shape[-1] for v in out.values()})
    if len(widths) > 1:
        raise DiffusionLabError(f"--prompt-embeds {p}: the embeddings have different widths {widths}")
    return out


class PromptEncoder:
    """Prompt -> T5 embeddings (1, 77, D): --prompt-embeds dict, then the disk cache, then T5 (loaded, released)."""

    def __init__(
        self,
        source: str,
        extra: dict,
        model_id: str,
        model_dir,
        device: torch.device,
        dtype: torch.dtype,
        embed_dim: int,
        prompt_embeds: dict[str, Tensor] | None = None,
        offload: bool = False,
    ) -> None:
        self.source, self.extra, self.model_id, self.model_dir = source, extra, model_id, model_dir
        self.device, self.dtype, self.embed_dim, self.offload = device, dtype, embed_dim, offload
        self.known: dict[str, Tensor] = dict(prompt_embeds or {})
        self.encoder_loads = 0  # how often T5 had to be loaded (tests and curious users)

    @staticmethod
    def preprocess(prompt: str) -> str:
        return prompt.lower().strip()  # IF's pipelines without caption cleaning

    def cache_path(self, prompt: str) -> Path:
        key = hashlib.sha256(f"{self.model_id}\n{self.preprocess(prompt)}".encode()).hexdigest()[:40]
        return t5_cache_dir() / f"{key}.safetensors"

    def _lookup(self, prompt: str) -> Tensor | None:
        for key in (prompt, self.preprocess(prompt)):
            if key in self.known:
                return self.known[key]
        path = self.cache_path(prompt)
        if path.is_file():
            from safetensors import safe_open

            try:
                with safe_open(str(path), "pt") as f:
                    meta = f.metadata() or {}
                    if meta.get("model") == self.model_id and meta.get("prompt") == self.preprocess(prompt):
                        emb = f.get_tensor("embeds")
                        self.known[prompt] = emb
                        return emb
            except Exception:  # noqa: BLE001 - a broken cache file is re-made
                return None
        return None

    def _store(self, prompt: str, emb: Tensor) -> None:
        from safetensors.torch import save_file

        self.known[prompt] = emb
        path = self.cache_path(prompt)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            meta = {"model": self.model_id, "prompt": self.preprocess(prompt)}
            save_file({"embeds": emb.detach().cpu().contiguous()}, str(tmp), metadata=meta)
            os.replace(tmp, path)
        except OSError as e:
            _warn_once(
                "t5-cache", f"cannot write the T5 embedding cache in {path.parent} ({e}); set DIFFUSIONLAB_CACHE"
            )

    @torch.no_grad()
    def _run_t5(self, prompts: list[str]) -> Tensor:
        from transformers import AutoTokenizer, T5EncoderModel

        try:
            tokenizer = AutoTokenizer.from_pretrained(
                self.source, subfolder="tokenizer", local_files_only=True, **self.extra
            )
        except (OSError, ValueError) as e:
            raise DiffusionLabError(missing_weights_message(self.model_id, self.model_dir, "T5 tokenizer")) from e
        encoder = _load(
            T5EncoderModel, self.source, "text_encoder", self.dtype, self.extra, self.model_id, self.model_dir
        )
        self.encoder_loads += 1
        try:
            if self.offload and self.device.type == "cuda":
                from accelerate import cpu_offload

                cpu_offload(encoder, execution_device=self.device)
            else:
                encoder = encoder.to(self.device)
            tokens = tokenizer(
                [self.preprocess(p) for p in prompts],
                padding="max_length",
                max_length=MAX_LENGTH,
                truncation=True,
                add_special_tokens=True,
                return_tensors="pt",
            )
            emb = encoder(
                tokens.input_ids.to(self.device), attention_mask=tokens.attention_mask.to(self.device)
            ).last_hidden_state
            return emb.to("cpu")
        except torch.cuda.OutOfMemoryError:
            raise DiffusionLabError(_oom_message("encoding prompts with T5")) from None
        finally:  # release the encoder: later steps need the memory for the UNet
            del encoder
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def __call__(self, prompts: Sequence[str]) -> Tensor:
        prompts = list(prompts)
        missing = list(dict.fromkeys(p for p in prompts if self._lookup(p) is None))
        if missing:
            if "" not in missing and self._lookup("") is None:
                missing.append("")  # the null prompt comes next anyway (CFG): one T5 load for both
            for p, emb in zip(missing, self._run_t5(missing), strict=True):
                self._store(p, emb.unsqueeze(0))
        embs = [self._lookup(p) for p in prompts]
        out = torch.cat([e.reshape(1, *e.shape[-2:]) for e in embs]).to(self.device, self.dtype)
        if out.shape[-1] != self.embed_dim:
            raise DiffusionLabError(
                f"prompt embeddings have width {out.shape[-1]} but this IF UNet takes {self.embed_dim} "
                "(--prompt-embeds from another text encoder?)"
            )
        return out


# -- the models ----------------------------------------------------------------------------------------------
class _IFBase:
    value_range = (-1.0, 1.0)
    predicts_variance = True  # 3 eps channels + 3 learned-range variance values
    default_prompt = "a high quality photo"  # the course's prompt for "unconditional" generation

    def __init__(self, unet, scheduler, prompts: PromptEncoder, device, dtype, model_id: str, hook=None) -> None:
        self.unet = unet.eval()
        self.scheduler = scheduler
        self.prompts = prompts
        self.device = torch.device(device)
        self.dtype = dtype
        self.model_id = self.name = model_id
        self._hook = hook
        # the betas themselves, so that abar is bit-identical to the scheduler's alphas_cumprod
        self.schedule = NoiseSchedule(scheduler.betas.detach().to("cpu", torch.float32), "cosine")
        size = int(unet.config.sample_size)
        self.image_shape = (int(unet.config.out_channels) // 2, size, size)
        self.sampler_defaults = sampler_defaults(scheduler, self.value_range)

    @property
    def filter_scale(self) -> float:
        """Hybrid-image filter sizes are given for 64 px; scale them by this (4 in stage II)."""
        return self.image_shape[-1] / 64

    def timesteps(self, num_steps: int) -> list[int]:
        return scheduler_timesteps(self.scheduler, num_steps)

    def encode(self, prompts: list[str]) -> Tensor:
        return self.prompts(prompts)

    def null(self, n: int) -> Tensor:
        e = self.prompts([""])
        return e.expand(n, *e.shape[1:])

    def _unet_input(self, x_t: Tensor) -> Tensor:
        return x_t

    def _class_labels(self, n: int) -> Tensor | None:
        return None

    @torch.no_grad()
    def predict(self, x_t: Tensor, t: Tensor | int, cond: Tensor) -> Prediction:
        n = x_t.shape[0]
        if self._hook is not None and _active_hook["hook"] is not self._hook:
            if _active_hook["hook"] is not None:
                _active_hook["hook"].offload()
            _active_hook["hook"] = self._hook
        t = torch.as_tensor(t, device=self.device).reshape(-1).long().expand(n)
        cond = cond.expand(n, *cond.shape[1:]) if cond.shape[0] == 1 else cond
        try:
            out = self.unet(
                self._unet_input(x_t).to(self.device, self.dtype),
                t,
                encoder_hidden_states=cond.to(self.device, self.dtype),
                class_labels=self._class_labels(n),
                return_dict=False,
            )[0]
        except torch.cuda.OutOfMemoryError:
            raise DiffusionLabError(_oom_message(f"running the {self.name} UNet on {n} images")) from None
        out = out.to(x_t.dtype)
        c = x_t.shape[1]
        return Prediction(out[:, :c], out[:, c : 2 * c])


class IFModel(_IFBase):
    """IF stage I (64 px, T = 1000 cosine, learned-range variance, dynamic thresholding) as a protocol model."""

    def __init__(self, *args, model_dir=None, offload: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.model_dir, self.offload = model_dir, offload
        self._stage2: dict[str, IFStage2] = {}

    def stage2(self, spec: str = STAGE2_DEFAULT) -> IFStage2:
        """The stage-II super-resolution model, from the same --model-dir / cache; shares this T5 cache."""
        model_id = resolve_model_id(spec, STAGE2_DEFAULT)
        if model_id not in self._stage2:
            where = self.model_dir
            if where is None and Path(self.model_id).is_absolute():
                where = Path(self.model_id).parent  # stage I given as a folder: look for IF-II-L-v1.0 beside it
            self._stage2[model_id] = load_stage2(model_id, self.device, where, self.prompts, self.offload)
        return self._stage2[model_id]


class IFStage2(_IFBase):
    """IF stage II: predict closes over the noised, upsampled low-res images (set by `condition`).

    The low-res rows are tiled over the batch (row b uses low_res[b % m]), which fits every estimator's
    batch layout: CFG [x, x], hybrid [x, x, x, x], anagrams [v1(x)..vk(x), v1(x)..vk(x)] with the viewed
    low-res images [v1(lr)..vk(lr)] set by `condition(..., views=...)`.
    """

    def __init__(self, unet, scheduler, noising_scheduler, *args, **kwargs) -> None:
        super().__init__(unet, scheduler, *args, **kwargs)
        self.noising_schedule = NoiseSchedule(noising_scheduler.betas.detach().to("cpu", torch.float32), "cosine")
        self.low_res: Tensor | None = None
        self.noise_level = 250

    def condition(
        self,
        images: Tensor,
        noise_level: int = 250,
        generator: torch.Generator | None = None,
        views: Sequence[Callable[[Tensor], Tensor]] | None = None,
    ) -> Tensor:
        """Upsample stage-I images (N, 3, h, w) in [-1, 1] bilinearly, noise them to noise_level; keep them."""
        from diffusionlab.sampling import randn

        if not 0 <= int(noise_level) < self.noising_schedule.num_steps:
            raise DiffusionLabError(f"noise level {noise_level} out of range 0..{self.noising_schedule.num_steps - 1}")
        size = self.image_shape[1:]
        up = F.interpolate(images.float().to(self.device), size, mode="bilinear", align_corners=True)
        noise = randn(up.shape, generator, like=up)
        low = add_noise(up, int(noise_level), noise, self.noising_schedule)
        if views:
            abar = float(self.noising_schedule.abar(int(noise_level)))
            low = torch.cat([_apply_view(v, low, abar) for v in views])
        self.low_res, self.noise_level = low, int(noise_level)
        return low

    def _unet_input(self, x_t: Tensor) -> Tensor:
        if self.low_res is None:
            raise DiffusionLabError("stage II needs its low-resolution images first: call condition(images) or upscale")
        m = self.low_res.shape[0]
        if x_t.shape[0] % m:
            raise DiffusionLabError(f"stage II batch of {x_t.shape[0]} does not tile its {m} low-res images")
        low = self.low_res.repeat(x_t.shape[0] // m, 1, 1, 1)
        return torch.cat([x_t, low.to(x_t.device, x_t.dtype)], dim=1)

    def _class_labels(self, n: int) -> Tensor:
        return torch.full((n,), self.noise_level, device=self.device, dtype=torch.long)


def _apply_view(view: Any, low: Tensor, abar: float) -> Tensor:
    """A views.View sees the low-res image as the noisy image it is (apply_noisy); a plain callable is applied."""
    if callable(getattr(view, "apply_noisy", None)):
        return view.apply_noisy(low, abar)
    if callable(view):
        return view(low)
    raise DiffusionLabError(f"cannot apply view {view!r} to the stage II low-res images")


# -- loading ---------------------------------------------------------------------------------------------------
def _device_dtype(device) -> tuple[torch.device, torch.dtype]:
    dev = torch.device(device) if device is not None and str(device) != "auto" else default_device()
    if dev.type == "cuda":
        return dev, torch.float16
    _warn_once(
        "cpu",
        "DeepFloyd IF on the CPU runs in float32: expect minutes per image and 20+ GB of RAM for IF-I-XL "
        "(a CUDA GPU with 16 GB, or --offload on a smaller one, is the intended setup)",
    )
    return dev, torch.float32


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
    spec: str, default: str, stage: str, in_channels: int, device, model_dir, offload: bool, prompt_width=None
) -> _Stage:
    """Resolve the model, find its files, check its UNet's config (this stage's, learned variance, prompt width),
    load its scheduler, then the UNet's weights (the heavy part, last) to the device."""
    _require_extra()
    from diffusers import UNet2DConditionModel

    dev, dtype = _device_dtype(device)
    model_id = resolve_model_id(spec, default)
    source, extra = locate(model_id, model_dir, in_channels=in_channels)
    check_unet_config(_unet_config(source, extra, model_id, model_dir), model_id, stage, in_channels, prompt_width)
    scheduler = _load_scheduler(source, "scheduler", extra, model_id, model_dir)
    unet = _load(UNet2DConditionModel, source, "unet", dtype, extra, model_id, model_dir)
    unet, hook = _to_device(unet, dev, offload, f"stage {stage} UNet")
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
    st = _open_stage(spec, STAGE1_DEFAULT, "I", 3, device, model_dir, offload, prompt_width=width)
    prompts = st.prompt_encoder(model_dir, known, offload)
    return IFModel(
        st.unet, st.scheduler, prompts, st.device, st.dtype, st.model_id, hook=st.hook, model_dir=model_dir,
        offload=offload,
    )  # fmt: skip


def load_stage2(
    spec: str = STAGE2_DEFAULT,
    device: str | torch.device | None = None,
    model_dir: str | Path | None = None,
    prompts: PromptEncoder | None = None,
    offload: bool = False,
) -> IFStage2:
    """Stage II (`DeepFloyd/IF-II-L-v1.0` by default); prompts: the stage-I model's encoder (shared T5 cache)."""
    st = _open_stage(spec, STAGE2_DEFAULT, "II", 6, device, model_dir, offload)
    noising = _load_scheduler(st.source, "image_noising_scheduler", st.extra, st.model_id, model_dir)
    if prompts is None:
        prompts = st.prompt_encoder(model_dir, None, offload)
    return IFStage2(st.unet, st.scheduler, noising, prompts, st.device, st.dtype, st.model_id, hook=st.hook)


# -- stage II upsampling on the one sampler -------------------------------------------------------------------
def upscale(
    stage2: IFStage2,
    images: Tensor,
    cond: Tensor | None = None,
    uncond: Tensor | None = None,
    scale: float = 4.0,
    timesteps: Sequence[int] | None = None,
    num_steps: int = 50,
    noise_level: int = 250,
    generator: torch.Generator | None = None,
    estimator: Callable | None = None,
    views: Sequence[Any] | None = None,
    progress: bool = True,
    callback: Callable | None = None,
) -> Tensor:
    """Stage-I images (N, 3, 64, 64) in [-1, 1] -> (N, 3, 256, 256) with CFG (IFSuperResolutionPipeline defaults:
    guidance 4, 50 steps, noise level 250), on `sampling.denoise`.

    estimator: any estimator built on `stage2` (anagram, hybrid ...) instead of plain CFG; for anagrams pass the
    same views so the low-res images are viewed too. Noise is drawn as x_T first, then the low-res noise, then
    one per step, all from `generator`.
    """
    from diffusionlab.guidance import cfg
    from diffusionlab.sampling import denoise, randn

    n = images.shape[0]
    ts = list(timesteps) if timesteps is not None else stage2.timesteps(num_steps)
    x = randn((n, *stage2.image_shape), generator, device=stage2.device)
    stage2.condition(images, noise_level, generator, views)
    if estimator is None:
        if cond is None:
            raise DiffusionLabError("stage II needs a prompt embedding (cond) or an estimator")
        estimator = cfg(stage2, cond, uncond if uncond is not None else stage2.null(1), scale)
    return denoise(
        stage2, x, ts, estimator, generator=generator, progress=progress, callback=callback, **stage2.sampler_defaults
    )
