"""diffusionlab: train diffusion models from scratch and use them as an image tool.

In a notebook::

    import diffusionlab as dl
    m = dl.load_model("mnist")
    dl.sample(m, ["3", "7"], n=4)              # shown inline; .images holds the tensor
    dl.sdedit(m, "test:0", prompt="3")

The names below are the tool layer's own functions (diffusionlab.tools); docs/api.md maps the course's
functions onto them. They are imported on first use, so `import diffusionlab` stays light.
"""

from diffusionlab.errors import DiffusionLabError

__version__ = "0.1.0"

_API = {
    "load_model": "diffusionlab.backends",
    "forward": "diffusionlab.tools",
    "one_step_denoise": "diffusionlab.tools",
    "iterative_denoise": "diffusionlab.tools",
    "sample": "diffusionlab.tools",
    "sdedit": "diffusionlab.tools",
    "inpaint": "diffusionlab.tools",
    "anagram": "diffusionlab.tools",
    "hybrid": "diffusionlab.tools",
    "train": "diffusionlab.tools",
    "Result": "diffusionlab.tools",
    "show": "diffusionlab.figures.grid",
    "to_pil": "diffusionlab.figures.grid",
    "set_progress": "diffusionlab.progress",
}
__all__ = ["DiffusionLabError", "__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'diffusionlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
