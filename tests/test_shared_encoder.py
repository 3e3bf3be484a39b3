"""CFG and hybrids share our UNet's encoder between branches: exact, and the encoder runs once per step."""

from __future__ import annotations

import pytest
import torch
from conftest import make_checkpoint
from parta_helpers import one_thread  # noqa: F401  (autouse fixture)

from diffusionlab import guidance
from diffusionlab.course_model import CourseModel
from diffusionlab.fastpath import accelerate
from diffusionlab.model_protocol import DiffusionModel


@pytest.fixture
def model(tmp_path):
    return CourseModel.from_checkpoint(make_checkpoint(tmp_path / "run", hidden=8, seed=3))


def test_branches_equal_the_plain_batched_call(model):
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    k = 3
    t = torch.rand(k * 3)
    c = torch.nn.functional.one_hot(torch.tensor([1, 2, 3, 7, 8, 9, 0, 0, 0]), 10).float()
    c[-3:] = 0
    plain = model.net(torch.cat([x] * k), t, c)
    assert torch.allclose(model.net.branches(x, k, t, c), plain, atol=1e-5)
    fast = accelerate(model, precision="fp32")
    assert torch.allclose(fast.net.branches(x, k, t, c), plain, atol=1e-4)


def _count_encoder_calls(model) -> list[int]:
    calls = [0]
    model.net.e1.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("kind", ["cfg", "hybrid"])
def test_one_encoder_pass_per_step_and_the_same_estimate(model, kind):
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    three, seven, null = model.encode(["3"]), model.encode(["7"]), model.null(1)
    make = {
        "cfg": lambda m: guidance.cfg(m, three, null, 5.0),
        "hybrid": lambda m: guidance.hybrid(m, three, seven, null, 5.0),
    }[kind]
    calls = _count_encoder_calls(model)
    shared = make(model)(x, 150).output
    assert calls[0] == 1  # one pass of e1 for all 2 (cfg) or 3 (hybrid) branches of the 4 images

    class NoSharing(DiffusionModel):  # the same model with the protocol's predict_branches: k copies of x
        def __getattr__(self, name):
            return getattr(model, name)

        def predict(self, x_t, t, cond):
            return model.predict(x_t, t, cond)

    plain = make(NoSharing())(x, 150).output
    assert calls[0] == 2
    assert torch.allclose(shared, plain, atol=1e-5)
