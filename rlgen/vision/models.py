"""The image models that ``rlgen <command>`` trains, by command name. Each is a
:class:`~rlgen.vision.trainer.GenerativeModel` that builds itself from a resolved run configuration
(``from_config``) and reports its own final figures (``report``). Its options are the fields of its
``options_class`` (and ``extra_options``), whose defaults are the run configuration's; its flags are made from them
(:mod:`rlgen.vision.config`). Adding a model is one entry here."""

from __future__ import annotations

import importlib

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

