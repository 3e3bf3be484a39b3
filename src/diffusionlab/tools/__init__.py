"""The tool layer: one function per tool, taking a model (or its name) and the user's request and returning a
Result (images, labelled figure, settings). The CLI, the report, the web UI and notebooks stand on it."""

from diffusionlab.tools.generate import sample
from diffusionlab.tools.illusions import anagram, hybrid
from diffusionlab.tools.image import forward, inpaint, iterative_denoise, one_step_denoise, sdedit, translate
from diffusionlab.tools.result import Result
from diffusionlab.tools.train import train

__all__ = [
    "Result",
    "anagram",
    "forward",
    "hybrid",
    "inpaint",
    "iterative_denoise",
    "one_step_denoise",
    "sample",
    "sdedit",
    "train",
    "translate",
]
