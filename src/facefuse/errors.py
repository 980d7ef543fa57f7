"""One exception family for everything a user can get wrong or a model can fail at.

Front-ends map these to exit codes (CLI), HTTP statuses (REST) and page messages (WebUI);
the message of each is written for a person, on one line.
"""

from __future__ import annotations


class FaceFuseError(Exception):
    """Base of every error facefuse raises on purpose."""

    exit_code = 5


class InputError(FaceFuseError):
    """An input is missing, unreadable, not an image, truncated or too large.

    `reason` says which, for programs (the REST API maps it to a status): "not_found",
    "unreadable", "empty", "not_an_image", "damaged_image", "too_many_pixels",
    "bad_output" or "" (other)."""

    exit_code = 3

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):
        return type(self), (str(self), self.reason)


class NoFaceError(FaceFuseError):
    """No usable face in an image.

    Fields for programs (front-ends branch on these, never on the message):
    `which`: "source", "target" or "" (an image with no role); `requested`: the face index
    asked for when faces were found but not that many (None: no face at all); `found`: how
    many faces there were; `name`: how the message names the image (default `which`)."""

    exit_code = 4

    def __init__(self, which: str = "", requested: int | None = None, found: int = 0, name: str | None = None,
                 detail: str | None = None):
        self.which, self.requested, self.found = which, requested, found
        self.name = name or which or "image"
        self.custom_detail = detail
        super().__init__(f"{self.name}: {self.detail}")

    @property
    def detail(self) -> str:
        """The message without the image's name: 'no face found', 'face 3 requested, only 2
        found', or what the raiser said (e.g. 'no face in any frame')."""
        if self.custom_detail:
            return self.custom_detail
        if self.requested is None:
            return "no face found"
        return f"face {self.requested} requested, only {self.found} found"

    def named(self, name: str) -> "NoFaceError":
        """The same error, naming the image as `name` (a file path, 'source a.jpg')."""
        return NoFaceError(self.which, self.requested, self.found, name, self.custom_detail)

    def __reduce__(self):  # picklable across process pools with its fields
        return NoFaceError, (self.which, self.requested, self.found, self.name, self.custom_detail)


class ConfigError(FaceFuseError):
    """A setting or parameter is out of range or unknown (the message names it)."""

    exit_code = 2


class EngineError(FaceFuseError):
    """A fusion engine could not run (wrong model file, missing runtime, ...)."""

    exit_code = 5


class OutputExistsError(FaceFuseError):
    """The output file exists and overwriting was not asked for.

    The message speaks the Python API's word (overwrite=True); the command line says
    --overwrite instead (`for_command_line`)."""

    exit_code = 3
    reason = "output_exists"
    API_HINT = "overwrite=True replaces it"

    def __init__(self, path, detail: str = API_HINT):
        self.path, self.detail = str(path), detail
        super().__init__(f"{self.path}: already exists ({detail})")

    def for_command_line(self) -> "OutputExistsError":
        """The same error in the command line's words (the flag instead of the keyword)."""
        if self.detail != self.API_HINT:
            return self
        return OutputExistsError(self.path, "use --overwrite to replace it")

    def __reduce__(self):
        return OutputExistsError, (self.path, self.detail)


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwound like Ctrl-C: every `except KeyboardInterrupt` cleans up for it, and
    the CLI exits 130. Its own class, not a bare KeyboardInterrupt: raised by the signal
    handler as a bare one, a killed `facefuse video` printed "interrupted" and returned 130,
    yet the process ended by SIGINT (exit -2) in about 1 run in 20 (CPython's check for an
    unhandled Ctrl-C at exit looks at the exception's exact type); as this class, 0 in 110."""
