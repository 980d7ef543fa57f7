"""facefuse: put a source face into a target photo, locally, at any resolution.

    import facefuse
    fuser = facefuse.Fuser()                     # loads the face models once
    image = fuser.fuse("me.jpg", "scene.jpg", ratio=0.8, mode="blend", resolution=2048)
    facefuse.write_image("out.jpg", image)

Heavy modules (mediapipe, the engines) load only when a Fuser is created.
"""

from .config import FusionParams, Settings, load_config
from .errors import ConfigError, EngineError, FaceFuseError, InputError, NoFaceError, OutputExistsError
from .io import decode_image, read_image, write_image

__version__ = "0.1.0"

__all__ = [
    "Fuser", "fuse", "FusionParams", "Settings", "load_config", "read_image", "write_image", "decode_image",
    "FaceFuseError", "InputError", "NoFaceError", "ConfigError", "EngineError", "OutputExistsError",
]


def __getattr__(name):  # Fuser/fuse pull in OpenCV + mediapipe: import them on first use
    if name in ("Fuser", "fuse", "FusionResult"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
