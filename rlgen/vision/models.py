"""The image models that ``rlgen <command>`` trains, by command name. Each is a
:class:`~rlgen.vision.trainer.GenerativeModel` that builds itself from a resolved run configuration
(``from_config``) and reports its own final figures (``report``). Its options are the fields of its
``options_class``, whose defaults are the run configuration's (:func:`option_defaults`); ``rlgen/configs/
vision.yaml`` holds the trainer's settings and only the model options a command or task sets otherwise. Adding a
model is one entry here and its flags in :mod:`rlgen.cli.vision`."""

from __future__ import annotations

import importlib
from typing import Any

from rlgen.vision.trainer import GenerativeModel

#: command -> "module:Class", imported when used (so that the command line starts without loading every model)
MODELS: dict[str, str] = {
    "gan": "rlgen.vision.gan.dcgan:DCGAN",
    "ssgan": "rlgen.vision.gan.ssgan:SSGAN",
    "infogan": "rlgen.vision.gan.infogan:InfoGAN",
    "vae": "rlgen.vision.likelihood.vae:VAEBase",
    "pixelcnn": "rlgen.vision.likelihood.pixelcnn:PixelCNN",
    "pixelrnn": "rlgen.vision.likelihood.pixelrnn:PixelRNN",
}


def model_class(command: str) -> type[GenerativeModel]:
    """The model class that ``rlgen <command>`` trains."""
    module, _, name = MODELS[command].partition(":")
    return getattr(importlib.import_module(module), name)


#: options-dataclass fields that come from the data or the trainer, not from the run configuration's model options
DERIVED_FIELDS = ("image_shape", "output", "num_classes", "steps_per_epoch", "epochs")


def option_defaults(command: str) -> dict[str, Any]:
    """The model options of ``rlgen <command>`` and their defaults, from its options dataclass (tuples as lists, as
    in a config file)."""
    from rlgen.common.config import keyword_defaults

    return keyword_defaults(model_class(command).options_class, exclude=DERIVED_FIELDS)
