"""One exception family for everything a user can get wrong or a model can fail at.

Front-ends map these to exit codes (CLI), HTTP statuses (REST) and page messages (WebUI);
the message of each is written for a person, on one line.
"""


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


class NoFaceError(FaceFuseError):
    """No usable face in the source or the target (the message says which)."""

    exit_code = 4

    def __init__(self, message: str, which: str = ""):
        super().__init__(message)
        self.which = which


class ConfigError(FaceFuseError):
    """A setting or parameter is out of range or unknown (the message names it)."""

    exit_code = 2


class EngineError(FaceFuseError):
    """A fusion engine could not run (wrong model file, missing runtime, ...)."""

    exit_code = 5


class OutputExistsError(FaceFuseError):
    """The output file exists and overwriting was not asked for."""

    exit_code = 3
    reason = "output_exists"
