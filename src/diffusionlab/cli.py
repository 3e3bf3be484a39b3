"""The `diffusionlab` command line. Commands live in diffusionlab/commands/, one module per group."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from diffusionlab import commands
from diffusionlab.commands.common import with_bundles, with_runtime_options
from diffusionlab.errors import DiffusionLabError

app = typer.Typer(
    name="diffusionlab",
    help="Train diffusion models from scratch (MNIST-like data) and use diffusion models as an image tool.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# a module with commands has register(app); the others hold helpers and options that those modules import
for _info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
    _register = getattr(importlib.import_module(f"{commands.__name__}.{_info.name}"), "register", None)
    if _register is not None:
        _register(app)
for _command in app.registered_commands:  # the bundles' options (common.ModelOptions), --threads and --precision
    _command.callback = with_runtime_options(with_bundles(_command.callback))


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors end in one line on stderr and exit status 2, never a traceback."""
    from diffusionlab.runtime import tune_malloc

    tune_malloc()  # big CPU tensors stay in the heap instead of being page-faulted afresh every step
    try:
        try:
            app(args=argv, standalone_mode=True)
        except DiffusionLabError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
    except SystemExit as e:
        from diffusionlab.distributed import end_rank_process

        end_rank_process(e.code)  # a torchrun rank ends without the interpreter's teardown; others go on
        raise
