"""`diffusionlab serve`: the Gradio web UI (optional extra `.[app]`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated

import typer

from diffusionlab.commands.common import DeviceOpt
from diffusionlab.errors import DiffusionLabError

INSTALL_APP = 'pip install "diffusionlab[app]" (in a clone of the repository: pip install -e ".[app]")'


def require_gradio() -> None:
    """Gradio installed, or one line saying how to install it (for an installed package and for a clone). Found,
    not imported: only diffusionlab.app imports gradio (the import-linter contract)."""
    if importlib.util.find_spec("gradio") is None:
        raise DiffusionLabError(f"the web UI needs Gradio: {INSTALL_APP}")


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        host: Annotated[
            str, typer.Option("--host", help="Address to listen on; 0.0.0.0 opens it to your network.")
        ] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", help="TCP port.")] = 7860,
        runs_dir: Annotated[
            Path,
            typer.Option("--runs-dir", help="Folder searched for trained runs (directories with model.safetensors)."),
        ] = Path("runs"),
        model: Annotated[
            list[str] | None,
            typer.Option(
                "--model",
                "-m",
                help="Model selected at start (repeatable): a shipped name, a run directory or checkpoint, or "
                "'deepfloyd'. Models given here are offered besides the ones found.",
            ),
        ] = None,
        default_model: Annotated[
            str | None, typer.Option("--default-model", help="Which model the chooser shows first.")
        ] = None,
        device: DeviceOpt = "auto",
        max_upload_mb: Annotated[int, typer.Option("--max-upload-mb", help="Upload size limit.")] = 10,
        max_images: Annotated[int, typer.Option("--max-images", help="Images per request limit.")] = 40,
    ) -> None:
        """Start the web UI (Gradio) on http://HOST:PORT: every Part A tool in a tab, with a model chooser."""
        from diffusionlab.app import Limits, serve
        from diffusionlab.model_protocol import resolve_device

        resolve_device(device)  # a bad --device fails here, in one line
        require_gradio()  # before the URL is printed: no address for a server that cannot start
        models = list(model or [])
        limits = Limits(max_upload_bytes=max_upload_mb * 1024 * 1024, max_images=max_images)
        print(f"diffusionlab web UI on http://{host}:{port} (runs from {runs_dir}); Ctrl+C stops it")
        serve(host, port, runs_dir, default_model or (models[0] if models else None), device, models, limits)
