"""DeepFloyd IF backend on tiny random IF components built here, saved with save_pretrained, loaded from disk.

diffusers' IFPipeline / IFSuperResolutionPipeline are the reference: our one sampler with CFG must match them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from diffusionlab import deepfloyd  # noqa: E402
from diffusionlab.backends import load_model  # noqa: E402
from diffusionlab.deepfloyd import load_deepfloyd, load_prompt_embeds  # noqa: E402
from diffusionlab.errors import DiffusionLabError  # noqa: E402
from diffusionlab.guidance import cfg  # noqa: E402
from diffusionlab.model_kinds import IF  # noqa: E402
from diffusionlab.model_protocol import randn  # noqa: E402
from diffusionlab.sampling import denoise  # noqa: E402
from diffusionlab.upscale import condition, upscale  # noqa: E402

WORDS = "a an the photo of man old people around campfire skull waterfalls rocket ship high quality".split()
D_TEXT = 16  # the tiny T5's d_model (4096 in IF)
S1, S2 = 16, 32  # tiny stage I / stage II image sizes (64 / 256 in IF)


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("\u2581" + w, -1.0) for w in WORDS]
    vocab += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz\u2581"]
    tk = Tokenizer(models.Unigram(vocab, unk_id=2))
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.decoder = decoders.Metaspace()
    tk.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    tok = T5TokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", extra_ids=0)
    return tok, len(vocab)


def _unet(size: int, in_channels: int, **extra):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=size,
        in_channels=in_channels,
        out_channels=6,
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        block_out_channels=(8, 16),
        layers_per_block=1,
        act_fn="gelu",
        attention_head_dim=4,
        cross_attention_dim=32,
        cross_attention_norm="group_norm",
        norm_num_groups=4,
        encoder_hid_dim=D_TEXT,
        encoder_hid_dim_type="text_proj",
        addition_embed_type="text",
        addition_embed_type_num_heads=2,
        resnet_time_scale_shift="scale_shift",
        **extra,
    )


def _if_scheduler(max_value: float = 1.5):
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        variance_type="learned_range",
        thresholding=True,
        dynamic_thresholding_ratio=0.95,
        sample_max_value=max_value,
        clip_sample=True,
        clip_sample_range=1.0,
    )


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """diffusers zero-initialises output convs; random weights everywhere make the comparison meaningful."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def build_tiny_if(root: Path) -> tuple[Path, Path]:
    """Tiny IF stage I + stage II in IF's folder layout under root/IF-I-XL-v1.0 and root/IF-II-L-v1.0."""
    from diffusers import DDPMScheduler, IFPipeline, IFSuperResolutionPipeline
    from transformers import T5Config, T5EncoderModel

    tok, vocab_size = _tokenizer()
    torch.manual_seed(0)
    t5 = T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=D_TEXT, d_kv=4, d_ff=32, num_layers=1, num_heads=2))
    unet1 = _unet(S1, 3)
    unet2 = _unet(S2, 6, class_embed_type="timestep")
    _randomise(unet1, 1)
    _randomise(unet2, 2)
    none = dict(safety_checker=None, feature_extractor=None, watermarker=None, requires_safety_checker=False)
    IFPipeline(tokenizer=tok, text_encoder=t5, unet=unet1, scheduler=_if_scheduler(), **none).save_pretrained(
        root / "IF-I-XL-v1.0"
    )
    noising = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=True)
    IFSuperResolutionPipeline(
        tokenizer=None,
        text_encoder=None,
        unet=unet2,
        scheduler=_if_scheduler(1.0),
        image_noising_scheduler=noising,
        **none,
    ).save_pretrained(root / "IF-II-L-v1.0")
    return root / "IF-I-XL-v1.0", root / "IF-II-L-v1.0"


@pytest.fixture(scope="module")
def tiny_if(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("if")
    build_tiny_if(root)
    return root


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny convolutions are dominated by thread overhead on a shared CPU; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSIONLAB_CACHE", str(tmp_path / "cache"))


def _pipeline(folder: Path, cls_name: str = "IFPipeline"):
    import diffusers

    cls = getattr(diffusers, cls_name)
    pipe = cls.from_pretrained(
        folder, local_files_only=True, safety_checker=None, feature_extractor=None, watermarker=None
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_protocol_and_config(tiny_if):
    model = load_deepfloyd("deepfloyd", device="cpu", model_dir=tiny_if)
    assert model.image_shape == (3, S1, S1) and model.value_range == (-1.0, 1.0)
    assert model.sampler_defaults == {"variance": "learned-range", "threshold": (0.95, 1.5), "clip": False}
    assert model.schedule.num_steps == 1000
    assert torch.equal(model.schedule.alphas_cumprod, model.scheduler.alphas_cumprod)
    cond = model.encode(["an old man", "a photo of a skull"])
    assert cond.shape == (2, 77, D_TEXT)
    x = torch.randn(2, 3, S1, S1)
    pred = model.predict(x, torch.tensor([500, 10]), cond)
    assert pred.output.shape == x.shape and pred.var_values.shape == x.shape
    # load_model (what --model uses) reaches the same loader; a local dir spec works too
    m2 = load_model(f"deepfloyd:{tiny_if / 'IF-I-XL-v1.0'}", "cpu")
    assert m2.image_shape == model.image_shape
    assert m2.stage2().image_shape == (3, S2, S2)  # found beside the stage-I folder
    assert model.kind is IF and m2.stage2().kind is IF
    assert m2.stage2().slot is m2.slot  # stage I and its stage II take turns on the GPU under --offload


def test_a_bare_if_folder_is_a_model_spec(tiny_if, tmp_path):
    """--model <IF folder>, without the deepfloyd: prefix: recognised by its contents, with the IF options."""
    embeds = tmp_path / "embeds.pth"
    torch.save({"a skull": torch.randn(1, 77, D_TEXT), "": torch.zeros(1, 77, D_TEXT)}, embeds)
    m = load_model(tiny_if / "IF-I-XL-v1.0", "cpu", prompt_embeds=embeds)
    assert isinstance(m, deepfloyd.IFModel) and m.image_shape == (3, S1, S1)
    assert m.encode(["a skull"]).shape == (1, 77, D_TEXT) and m.prompts.encoder_loads == 0
    with pytest.raises(DiffusionLabError, match="this is stage II"):
        load_model(str(tiny_if / "IF-II-L-v1.0"), "cpu")


def test_stage1_matches_ifpipeline(tiny_if):
    model = load_deepfloyd("deepfloyd:IF-I-XL-v1.0", device="cpu", model_dir=tiny_if)
    cond, uncond = model.encode(["an old man", "people around a campfire"]), model.null(1)
    ts = list(range(990, -1, -90))
    g = torch.Generator().manual_seed(7)
    x = randn((2, *model.image_shape), g)
    ours = denoise(model, x, ts, cfg(model, cond, uncond, 7.0), generator=g, progress=False, **model.sampler_defaults)

    pipe = _pipeline(tiny_if / "IF-I-XL-v1.0")
    ref = pipe(
        prompt_embeds=cond,
        negative_prompt_embeds=uncond.expand(2, -1, -1),
        timesteps=ts,
        guidance_scale=7.0,
        output_type="pt",
        generator=torch.Generator().manual_seed(7),
    ).images
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() <= 1e-4


def test_stage2_matches_superresolution_pipeline(tiny_if):
    model = load_deepfloyd("deepfloyd", device="cpu", model_dir=tiny_if)
    stage2 = model.stage2()
    assert stage2.image_shape == (3, S2, S2) and stage2.filter_scale == S2 / 64
    cond, uncond = model.encode(["a rocket ship"]), model.null(1)
    low = torch.rand(2, 3, S1, S1) * 2 - 1
    ts = [980, 700, 400, 100, 0]
    ours = upscale(
        stage2,
        low,
        cond,
        uncond,
        scale=4.0,
        timesteps=ts,
        noise_level=250,
        generator=torch.Generator().manual_seed(3),
        progress=False,
    )
    pipe = _pipeline(tiny_if / "IF-II-L-v1.0", "IFSuperResolutionPipeline")
    ref = pipe(
        image=low,
        prompt_embeds=cond.expand(2, -1, -1),
        negative_prompt_embeds=uncond.expand(2, -1, -1),
        timesteps=ts,
        guidance_scale=4.0,
        noise_level=250,
        output_type="pt",
        generator=torch.Generator().manual_seed(3),
    ).images
    assert ours.shape == ref.shape == (2, 3, S2, S2)
    assert (ours - ref).abs().max().item() <= 1e-4


def test_stage2_views_tile_the_low_res_images(tiny_if):
    """Anagram layout [v1(x), v2(x), v1(x), v2(x)]: the low-res images are viewed the same way."""
    model = load_deepfloyd("deepfloyd", device="cpu", model_dir=tiny_if)
    stage2 = model.stage2()
    low = torch.rand(1, 3, S1, S1) * 2 - 1
    flip = lambda z: torch.flip(z, dims=[-2, -1])  # noqa: E731
    both = condition(stage2, low, 250, torch.Generator().manual_seed(0), views=[lambda z: z, flip])
    assert both.shape == (2, 3, S2, S2) and torch.equal(both[1:], flip(both[:1]))
    x = torch.randn(1, 3, S2, S2)
    cond = model.encode(["a skull"])
    out = stage2.predict(torch.cat([x, flip(x), x, flip(x)]), torch.tensor(500), cond).output
    stage2.low_res = both[1:]
    single = stage2.predict(flip(x), torch.tensor(500), cond).output
    assert torch.allclose(out[1:2], single, atol=1e-5) and torch.allclose(out[3:], single, atol=1e-5)
    with pytest.raises(DiffusionLabError, match="tile"):
        stage2.low_res = both
        stage2.predict(torch.cat([x, x, x]), torch.tensor(500), cond)
    assert deepfloyd.IFStage2.timesteps(stage2, 50)[:2] == [980, 960]


def test_stage2_anagram_and_hybrid_estimators(tiny_if):
    """Stage II takes the generic estimators: anagram views also view the low-res images; hybrid filters scale."""
    from diffusionlab import guidance
    from diffusionlab.views import get_view

    model = load_deepfloyd("deepfloyd", device="cpu", model_dir=tiny_if)
    stage2 = model.stage2()
    c1, c2, u = model.encode(["an old man"]), model.encode(["a campfire"]), model.null(1)
    low = torch.rand(2, 3, S1, S1) * 2 - 1
    views = [get_view("identity", stage2.image_shape), get_view("rot180", stage2.image_shape)]
    est = guidance.anagram(stage2, list(zip(views, [c1, c2], strict=True)), u, 4.0)
    g = torch.Generator().manual_seed(0)
    out = upscale(stage2, low, estimator=est, views=views, timesteps=[900, 500, 0], generator=g, progress=False)
    assert out.shape == (2, 3, S2, S2) and torch.isfinite(out).all()
    assert stage2.low_res.shape[0] == 4  # 2 views x 2 images, tiled over cond/uncond
    est = guidance.hybrid(stage2, c1, c2, u, 4.0)
    out = upscale(stage2, low, estimator=est, timesteps=[900, 500, 0], generator=g, progress=False)
    assert out.shape == (2, 3, S2, S2) and stage2.low_res.shape[0] == 2


def test_t5_cache_skips_the_encoder(tiny_if):
    model = load_deepfloyd("deepfloyd", device="cpu", model_dir=tiny_if)
    a = model.encode(["An old man", "a skull"])
    assert model.prompts.encoder_loads == 1
    again = load_deepfloyd("deepfloyd", device="cpu", model_dir=tiny_if)
    b = again.encode(["An old man", "a skull"])
    assert again.prompts.encoder_loads == 0 and torch.equal(a, b)
    again.null(3)  # "" was encoded with the first prompts (CFG needs it next)
    again.encode(["a rocket ship"])
    assert again.prompts.encoder_loads == 1


def test_prompt_embeds_dict(tiny_if, tmp_path):
    embeds = {"an oil painting of an old man": torch.randn(1, 77, D_TEXT), "": torch.zeros(1, 77, D_TEXT)}
    path = tmp_path / "prompt_embeds_dict.pth"
    torch.save(embeds, path)
    model = load_deepfloyd("deepfloyd", device="cpu", model_dir=tiny_if, prompt_embeds=path)
    out = model.encode(["an oil painting of an old man"])
    assert torch.equal(out, embeds["an oil painting of an old man"]) and torch.equal(model.null(1), embeds[""])
    assert model.prompts.encoder_loads == 0
    bad = tmp_path / "bad.pth"
    torch.save({"p": [1, 2]}, bad)
    with pytest.raises(DiffusionLabError, match="expected a dict"):
        load_prompt_embeds(bad)
    wrong = tmp_path / "wrong.pth"
    torch.save({"x": torch.zeros(1, 77, 4096)}, wrong)
    with pytest.raises(DiffusionLabError, match="width 4096"):  # refused at load, before the UNet's weights
        load_deepfloyd("deepfloyd", device="cpu", model_dir=tiny_if, prompt_embeds=wrong)


def test_missing_weights_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(DiffusionLabError) as e:
        load_deepfloyd("deepfloyd", device="cpu", model_dir=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "IF-I-XL-v1.0" in msg and "licence" in msg and "hf auth login" in msg
    assert "GB" in msg
    with pytest.raises(DiffusionLabError, match="IF-I-L-v1.0"):
        load_deepfloyd("deepfloyd:L", device="cpu")
    with pytest.raises(DiffusionLabError, match="not found in"):
        load_deepfloyd(f"deepfloyd:{tmp_path}", device="cpu")


def test_resolve_model_id():
    assert deepfloyd.resolve_model_id("deepfloyd") == "DeepFloyd/IF-I-XL-v1.0"
    assert deepfloyd.resolve_model_id("deepfloyd:IF-I-M-v1.0") == "DeepFloyd/IF-I-M-v1.0"
    assert deepfloyd.resolve_model_id("deepfloyd:l") == "DeepFloyd/IF-I-L-v1.0"
    assert deepfloyd.resolve_model_id("deepfloyd:someone/IF-fork") == "someone/IF-fork"


@pytest.mark.slow
def test_cli_part_a_tools_on_tiny_if(tiny_if, tmp_path, capsys):
    """--model deepfloyd:<dir> through the same CLI as every other model (anagram, hybrid, sdedit, inpaint...)."""
    from PIL import Image

    from diffusionlab.cli import main

    img = tmp_path / "in.png"
    Image.fromarray((torch.rand(S1, S1, 3) * 255).byte().numpy()).save(img)
    model = ["--model", f"deepfloyd:{tiny_if / 'IF-I-XL-v1.0'}", "--device", "cpu"]
    runs = {
        "anagram": ["anagram", "-p", "an old man", "-p", "people around a campfire", "-n", "1"],
        "hybrid": ["hybrid", "-p", "a skull", "-p", "waterfalls", "-n", "1"],
        "sdedit": ["sdedit", "--image", str(img), "--i-start", "30,33"],
        "inpaint": ["inpaint", "--image", str(img), "-p", "a rocket ship"],
        "sample": ["sample", "-p", "a photo of a dog", "-n", "2", "--steps", "5"],
        "stage2": ["sample", "-p", "a photo of a dog", "-n", "1", "--steps", "3", "--stage2", "--stage2-steps", "2"],
        "noise": ["noise", "--image", str(img)],
        "denoise": ["denoise", "--image", str(img), "--method", "one-step"],
    }
    for name, args in runs.items():
        out = tmp_path / f"{name}.png"
        with pytest.raises(SystemExit) as e:
            main([*args, *model, "--out", str(out)])
        assert e.value.code in (0, None), name
        assert out.is_file(), name
    assert '"stage2": true' in Image.open(tmp_path / "stage2.png").text["diffusionlab"]  # sample --stage2 ran
    assert "wrote" in capsys.readouterr().out


def test_out_of_memory_is_one_line(tiny_if, monkeypatch):
    model = load_deepfloyd("deepfloyd", device="cpu", model_dir=tiny_if)

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(model.unet, "forward", oom)
    with pytest.raises(DiffusionLabError, match="--offload") as e:
        model.predict(torch.zeros(1, 3, S1, S1), torch.tensor(10), torch.zeros(1, 77, D_TEXT))
    assert "\n" not in str(e.value)


def test_each_loader_refuses_the_other_stage(tiny_if):
    from diffusionlab.deepfloyd import load_stage2

    with pytest.raises(DiffusionLabError, match="not an IF stage-I model .*6 channels"):
        load_deepfloyd(f"deepfloyd:{tiny_if / 'IF-II-L-v1.0'}", device="cpu")
    with pytest.raises(DiffusionLabError, match="not an IF stage-II model .*3 channels"):
        load_stage2(str(tiny_if / "IF-I-XL-v1.0"), device="cpu")
