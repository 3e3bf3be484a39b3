"""The one exception type for errors a user can cause (bad file, unknown prompt, out-of-range step, ...)."""


class DiffusionLabError(Exception):
    """A problem with the user's input or environment. The CLI prints it on one line and exits with status 2.

    The message says what is wrong and how to fix it; it never needs a traceback to be understood.
    """
