"""The web UI: `diffusionlab serve`, a Gradio app with one tab for every Part A tool.

Optional extra: `pip install -e ".[app]"`. Gradio is imported only inside `build_app`/`serve`, so the core package
never needs it. The handlers are plain functions over the tool layer (`diffusionlab.tools`, the same functions as the
CLI and the report; no algorithm lives here); the UI adds the model chooser, a picker of genuine test images, the
input limits, PNG results with their settings, and one-line error messages.

Safety rules, all enforced on the server (an API client can send anything a browser can):
- a model is chosen by a value from the server's own list (shipped models, runs found under the runs directory,
  models given on the command line, DeepFloyd IF where its weights are on disk); a path is never taken from the
  browser, and run paths are resolved and must stay inside the runs directory;
- uploaded files are read only from Gradio's upload cache, after a size check, and only when their header says
  they are an image of at most `max_pixels` pixels;
- one job at a time per model (a lock per model, inside Gradio's queue), a bounded queue, bounded sizes.
"""

from diffusionlab.app.inputs import open_upload
from diffusionlab.app.registry import Limits, ModelRegistry, deepfloyd_available
from diffusionlab.app.ui import serve

__all__ = ["Limits", "ModelRegistry", "deepfloyd_available", "open_upload", "serve"]
