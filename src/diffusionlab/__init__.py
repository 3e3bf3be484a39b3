"""diffusionlab: train diffusion models from scratch and use them as an image tool."""

from diffusionlab.errors import DiffusionLabError

__version__ = "0.1.0"
__all__ = ["DiffusionLabError", "__version__"]
