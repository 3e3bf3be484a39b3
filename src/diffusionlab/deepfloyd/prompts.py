"""Prompts -> T5 embeddings for DeepFloyd IF, cached.

In order: the --prompt-embeds dictionary (the course's precomputed {prompt: (1, 77, 4096)}), the disk cache
(safetensors, keyed by model id and prompt, under `$DIFFUSIONLAB_CACHE/t5`, default `~/.cache/diffusionlab/t5`),
then the T5 encoder itself, loaded only for prompts found in neither and released right after.
"""

from __future__ import annotations

import gc
import hashlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from diffusionlab.deepfloyd.weights import load_pretrained, missing_weights_message, oom_message
from diffusionlab.environment import cache_dir
from diffusionlab.errors import DiffusionLabError
from diffusionlab.files import regular_file

MAX_LENGTH = 77


def t5_cache_dir() -> Path:
    return cache_dir() / "t5"


def load_prompt_embeds(path: str | Path) -> dict[str, Tensor]:
    """The course's precomputed {prompt: (1, 77, 4096)} dictionary, loaded without executing pickled code."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DiffusionLabError(f"--prompt-embeds {p}: no such file")
    regular_file(p, f"--prompt-embeds {p}")  # a named pipe would block torch.load
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
        self._cache_warned = False  # an unwritable cache folder is said once per encoder

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
            if not self._cache_warned:
                self._cache_warned = True
                print(
                    f"warning: cannot write the T5 embedding cache in {path.parent} ({e}); set DIFFUSIONLAB_CACHE",
                    file=sys.stderr,
                )

    def _load_t5(self):
        """The tokenizer and the T5 encoder on the device (or, --offload on a GPU, behind accelerate's hook)."""
        from transformers import AutoTokenizer, T5EncoderModel

        try:
            tokenizer = AutoTokenizer.from_pretrained(
                self.source, subfolder="tokenizer", local_files_only=True, **self.extra
            )
        except (OSError, ValueError) as e:
            raise DiffusionLabError(missing_weights_message(self.model_id, self.model_dir, "T5 tokenizer")) from e
        encoder = load_pretrained(
            T5EncoderModel, self.source, "text_encoder", self.dtype, self.extra, self.model_id, self.model_dir
        )
        self.encoder_loads += 1
        return tokenizer, encoder

    @torch.no_grad()
    def _run_t5(self, prompts: list[str]) -> Tensor:
        tokenizer, encoder = self._load_t5()
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
            raise DiffusionLabError(oom_message("encoding prompts with T5")) from None
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
