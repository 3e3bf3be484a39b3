import csv
import json

import pytest
import torch
from conftest import make_checkpoint

from diffusionlab.cli import main
from diffusionlab.data import load_split
from diffusionlab.errors import DiffusionLabError
from diffusionlab.model_files import load_checkpoint
from diffusionlab.training import open_run, recipe, training_loss


def losses(run_dir):
    with (run_dir / "loss.csv").open() as f:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)]


def tiny(kind="class", objective="ddpm", **kw):
    return recipe(kind, objective, hidden=8, batch_size=16, epochs=2, num_steps=50, **kw)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize(("kind", "objective"), [("class", "ddpm"), ("time", "flow"), ("denoiser", "ddpm")])
def test_resume_gives_the_same_losses_and_weights(tmp_path, tiny_data, kind, objective, precision):
    """Resume is bit-exact in each precision (docs/precision.md), forced so that every CPU checks both."""
    split = load_split("mnist", "train", tiny_data)
    opts = dict(resume=False, progress=False, precision=precision)
    full = open_run(tiny(kind, objective), tmp_path / "full", **opts)
    full.run(split)
    # the same run, stopped inside epoch 2 (max_steps) then resumed to the end
    part = open_run(tiny(kind, objective, max_steps=6), tmp_path / "part", **opts)
    part.run(split)
    assert losses(tmp_path / "part")[-1][0] == 6
    again = open_run(tiny(kind, objective), tmp_path / "part", **{**opts, "resume": True})
    again.run(split)
    assert losses(tmp_path / "part") == losses(tmp_path / "full")
    a, _ = load_checkpoint(tmp_path / "full")
    b, config = load_checkpoint(tmp_path / "part")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert config["provenance"]["epoch"] == 2 and config["provenance"]["step"] == 8
    assert (tmp_path / "part" / "loss.png").is_file()


def test_ctrl_c_saves_a_resumable_checkpoint(tmp_path, tiny_data):
    split = load_split("mnist", "train", tiny_data)
    full = open_run(tiny(), tmp_path / "full", resume=False, progress=False)
    full.run(split)

    def interrupt(event):
        raise KeyboardInterrupt

    run = open_run(tiny(), tmp_path / "run", resume=False, progress=False, on_epoch_end=interrupt)
    with pytest.raises(KeyboardInterrupt):
        run.run(split)
    saved = json.loads((tmp_path / "run" / "model.json").read_text())
    assert saved["provenance"]["step"] == 4
    open_run(tiny(), tmp_path / "run", resume=True, progress=False).run(split)
    assert losses(tmp_path / "run") == losses(tmp_path / "full")


def test_snapshots_at_the_figure_epochs(tmp_path, tiny_data):
    run = open_run(tiny(snapshot_epochs=(1,)), tmp_path / "r", resume=False, progress=False)
    run.run(load_split("mnist", "train", tiny_data))
    assert sorted(p.name for p in (tmp_path / "r" / "snapshots").glob("*.safetensors")) == ["epoch_1.safetensors"]


def test_existing_run_needs_resume_and_kind_must_match(tmp_path):
    make_checkpoint(tmp_path / "r", kind="class")
    with pytest.raises(DiffusionLabError, match="already holds a run"):
        open_run(tiny(), tmp_path / "r", resume=False)
    with pytest.raises(DiffusionLabError, match="cannot resume"):
        open_run(tiny("time"), tmp_path / "r", resume=True)
    with pytest.raises(DiffusionLabError, match="no run to continue"):
        open_run(tiny(), tmp_path / "empty", resume=True)


def test_recipes_are_the_course_recipes():
    d, t, c, f = recipe("denoiser"), recipe("time"), recipe("class"), recipe("class", "flow")
    assert (d.hidden, d.batch_size, d.epochs, d.lr, d.lr_gamma, d.sigma) == (128, 256, 5, 1e-4, None, 0.5)
    assert (t.hidden, t.batch_size, t.epochs, t.lr, t.num_steps) == (64, 128, 20, 1e-3, 300)
    assert t.lr_gamma == pytest.approx(0.1 ** (1 / 20)) and c.p_uncond == 0.1
    assert (f.batch_size, f.epochs, f.lr, f.lr_gamma) == (64, 10, 1e-2, pytest.approx(0.1 ** (1 / 10)))
    assert recipe("time", "flow").unet_config().time_mode == "mul"
    assert f.unet_config().time_mode == "add"  # the class flow model conditions as B2.4


def test_class_dropout_rate():
    from diffusionlab.training import one_hot_dropped

    g = torch.Generator().manual_seed(0)
    c = one_hot_dropped(torch.zeros(20_000, dtype=torch.long), 10, 0.1, g)
    assert abs((c.sum(1) == 0).float().mean().item() - 0.1) < 0.01


class Recorder(torch.nn.Module):
    """The network as the training loss calls it, with the class vectors it is given recorded."""

    def __init__(self, net):
        super().__init__()
        self.net, self.classes = net, []

    def forward(self, x, t=None, c=None):
        self.classes.append(None if c is None else c.detach().clone())
        return self.net(x, t, c) if self.net is not None else torch.zeros_like(x)


@pytest.mark.parametrize("objective", ["ddpm", "flow"])
def test_the_training_loss_drops_class_labels_at_p_uncond(objective):
    """CFG needs the unconditional branch: training_loss gives the network zero class vectors at rate p_uncond and
    the one-hot labels otherwise (a test of one_hot_dropped alone passes when the loss stops calling it)."""
    from diffusionlab.schedule import NoiseSchedule

    net, labels = Recorder(None), torch.arange(8000) % 10
    x, schedule = torch.rand(8000, 1, 28, 28), NoiseSchedule.linear(50) if objective == "ddpm" else None
    training_loss(net, x, labels, tiny("class", objective, p_uncond=0.25), schedule, torch.Generator().manual_seed(0))
    (c,) = net.classes
    dropped = c.sum(1) == 0
    assert abs(dropped.float().mean().item() - 0.25) < 0.02
    assert torch.equal(c[~dropped], torch.nn.functional.one_hot(labels[~dropped], 10).float())


def test_training_drops_class_labels(tmp_path, tiny_data):
    """The same through the Trainer's steps, the path a run takes: zero class vectors at about p_uncond, one-hot
    vectors otherwise."""
    trainer = open_run(tiny(p_uncond=0.25), tmp_path / "r", resume=False, progress=False)
    trainer.train_net = recorder = Recorder(trainer.train_net)
    trainer.run(load_split("mnist", "train", tiny_data))
    c = torch.cat(recorder.classes)
    assert len(recorder.classes) == 8 and c.shape == (128, 10)  # 2 epochs of 4 steps of 16 images
    assert bool(((c == 0) | (c == 1)).all()) and set(c.sum(1).tolist()) == {0.0, 1.0}
    assert 0.12 < (c.sum(1) == 0).float().mean().item() < 0.38


def test_ddpm_loss_matches_the_formula():
    """The DDPM loss is || eps - net(sqrt(abar) x + sqrt(1 - abar) eps, (t + 1) / T, c) ||^2 with draws from the generator."""
    config = tiny("time")
    from diffusionlab.networks.unet import UNet
    from diffusionlab.schedule import NoiseSchedule

    torch.manual_seed(0)
    net = UNet(config.unet_config()).eval()
    sched = NoiseSchedule.linear(50)
    x = torch.rand(4, 1, 28, 28)
    loss = training_loss(net, x, torch.zeros(4, dtype=torch.long), config, sched, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    t = torch.randint(0, 50, (4,), generator=g)
    eps = torch.randn(x.shape, generator=g)
    ab = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 50), 0)[t].view(-1, 1, 1, 1)
    expected = ((net(ab.sqrt() * x + (1 - ab).sqrt() * eps, (t + 1) / 50) - eps) ** 2).mean()
    assert torch.allclose(loss, expected)


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


@pytest.mark.parametrize("data", ["mnist", "fashion-mnist"])
def test_train_and_sample_cli(tmp_path, tiny_data, capsys, data):
    run_dir = tmp_path / "t"
    args = [
        "train",
        "class",
        "--data",
        data,
        "--data-dir",
        str(tiny_data),
        "--epochs",
        "1",
        "--max-steps",
        "3",
        "--batch-size",
        "16",
        "--hidden",
        "8",
        "--num-steps",
        "20",
        "--out",
        str(run_dir),
    ]
    code, out, _ = run_cli(args, capsys)
    assert code in (0, None)
    for name in ("model.safetensors", "model.json", "loss.csv", "loss.png", "train_state.safetensors"):
        assert (run_dir / name).is_file(), name
    assert len(losses(run_dir)) == 3 and "wrote:" in out
    prompt = "3" if data == "mnist" else "sneaker"
    code, out, _ = run_cli(
        [
            "sample",
            "--model",
            str(run_dir),
            "--prompt",
            prompt,
            "-n",
            "8",
            "--out",
            str(tmp_path / "s.png"),
            "--gif",
            str(tmp_path / "s.gif"),
        ],
        capsys,
    )
    assert code in (0, None) and (tmp_path / "s.png").is_file() and (tmp_path / "s.gif").is_file()
    # nothing is overwritten: the same command again is refused
    code, _, err = run_cli(["sample", "--model", str(run_dir), "--out", str(tmp_path / "s.png")], capsys)
    assert code == 2 and "already exists" in err


def test_full_epoch_writes_the_part_b_figures(tmp_path, tiny_data, capsys):
    run_dir = tmp_path / "d"
    code, _, _ = run_cli(
        [
            "train",
            "denoiser",
            "--data-dir",
            str(tiny_data),
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--hidden",
            "8",
            "--out",
            str(run_dir),
        ],
        capsys,
    )
    assert code in (0, None)
    names = {p.name for p in (run_dir / "figures").iterdir()}
    assert {"noising_grid.png", "denoised_epoch1.png", "sigma_sweep.png"} <= names


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "class", "--data-dir", "{missing}"], "file not found"),
        (["train", "class", "--data-dir", "{data}", "--resume", "--out", "{run}"], "cannot resume"),
        (["train", "wizard", "--data-dir", "{data}"], "unknown model kind"),
        (["sample", "--model", "{run}", "--prompt", "eleven", "--out", "{tmp}/x.png"], "valid prompts"),
        (["sample", "--model", "{tmp}/nothing", "--out", "{tmp}/x.png"], "no such file"),
        (["train", "class", "--data-dir", "{data}", "--out", "{run}"], "already holds a run"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, tiny_data, capsys, args, message):
    run = make_checkpoint(tmp_path / "run", kind="time")
    before = (run / "model.safetensors").read_bytes()
    subs = {"{missing}": str(tmp_path / "none"), "{data}": str(tiny_data), "{run}": str(run), "{tmp}": str(tmp_path)}
    args = [subs.get(a, a) for a in args]
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if message == "valid prompts":
        make_checkpoint(tmp_path / "c", kind="class")
        args[2] = str(tmp_path / "c")
    code, _, err = run_cli(args, capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert (run / "model.safetensors").read_bytes() == before  # nothing overwritten


@pytest.mark.parametrize(("signum", "precision"), [("SIGTERM", "fp32"), ("SIGINT", "fp32"), ("SIGINT", "bf16")])
def test_a_signal_mid_epoch_saves_at_a_step_boundary_and_resume_is_exact(
    tmp_path, tiny_data, monkeypatch, signum, precision
):
    """SIGTERM or Ctrl-C inside an epoch: the run stops after the step in flight, saves, and --resume gives the
    losses and the raw and EMA weights of an uninterrupted run, bit for bit."""
    import os
    import signal

    from diffusionlab.training import Trainer
    from diffusionlab.training.state import read_state

    split = load_split("mnist", "train", tiny_data)
    opts = dict(progress=False, precision=precision)
    open_run(tiny(), tmp_path / "full", resume=False, **opts).run(split)
    original = Trainer._train_step

    def step_then_signal(self, *args):
        loss = original(self, *args)
        if self.step == 3:  # inside epoch 1 (4 steps per epoch)
            os.kill(os.getpid(), getattr(signal, signum))
        return loss

    monkeypatch.setattr(Trainer, "_train_step", step_then_signal)
    with pytest.raises(KeyboardInterrupt):
        open_run(tiny(), tmp_path / "run", resume=False, **opts).run(split)
    assert read_state(tmp_path / "run" / "train_state.safetensors").meta["step"] == 3
    monkeypatch.setattr(Trainer, "_train_step", original)
    open_run(tiny(), tmp_path / "run", resume=True, **opts).run(split)
    assert losses(tmp_path / "run") == losses(tmp_path / "full")
    a = read_state(tmp_path / "full" / "train_state.safetensors")
    b = read_state(tmp_path / "run" / "train_state.safetensors")
    assert all(torch.equal(a.raw[k], b.raw[k]) for k in a.raw) and all(torch.equal(a.ema[k], b.ema[k]) for k in a.ema)
    assert signal.getsignal(signal.SIGTERM) is not None  # the run's handlers are gone, the old ones back


def test_pure_noise_denoiser_loss_sees_no_trace_of_the_image():
    """--pure-noise: the input is z = eps alone, so the loss is || D(eps) - x ||^2 with eps from the generator."""
    from diffusionlab.networks.unet import UNet

    config = recipe("denoiser", hidden=8, pure_noise=True)
    torch.manual_seed(0)
    net = UNet(config.unet_config()).eval()
    x = torch.rand(4, 1, 28, 28)
    loss = training_loss(net, x, torch.zeros(4, dtype=torch.long), config, None, torch.Generator().manual_seed(3))
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(loss, ((net(eps) - x) ** 2).mean())
    noisy = training_loss(
        net,
        x,
        torch.zeros(4, dtype=torch.long),
        recipe("denoiser", hidden=8, sigma=0.3),
        None,
        torch.Generator().manual_seed(3),
    )
    assert torch.allclose(noisy, ((net(x + 0.3 * eps) - x) ** 2).mean())
    with pytest.raises(DiffusionLabError, match="--pure-noise is for the single-step denoiser"):
        recipe("class", pure_noise=True)
    with pytest.raises(DiffusionLabError, match="--sigma"):
        recipe("denoiser", sigma=float("nan"))


def test_ema_follows_the_formula_and_is_what_the_run_exports(tmp_path, tiny_data):
    """ema_k = d_k ema_{k-1} + (1 - d_k) w_k with d_k = min(decay, (1 + k) / (10 + k)); model.safetensors holds it."""
    from diffusionlab.training import Trainer
    from diffusionlab.training.ema import ema_decay_at
    from diffusionlab.training.state import read_state

    split = load_split("mnist", "train", tiny_data)
    seen = []
    original = Trainer._train_step

    def record(self, *args):
        loss = original(self, *args)
        seen.append({k: v.detach().clone() for k, v in self.net.state_dict().items() if v.is_floating_point()})
        return loss

    trainer = open_run(tiny(ema_decay=0.9), tmp_path / "r", resume=False, progress=False)
    first = {k: v.detach().clone() for k, v in trainer.net.state_dict().items() if v.is_floating_point()}
    trainer._train_step = record.__get__(trainer)
    trainer.run(split)
    ema = first
    for k, weights in enumerate(seen, start=1):
        d = ema_decay_at(0.9, k)
        ema = {name: d * ema[name] + (1 - d) * weights[name] for name in ema}
    exported, _ = load_checkpoint(tmp_path / "r")
    assert all(torch.allclose(exported[k], ema[k], atol=1e-6) for k in ema)
    state = read_state(tmp_path / "r" / "train_state.safetensors")
    assert all(torch.equal(state.raw[k], seen[-1][k]) for k in seen[-1])  # the raw weights stay in the state
    assert not all(torch.equal(state.raw[k], exported[k]) for k in ema)
