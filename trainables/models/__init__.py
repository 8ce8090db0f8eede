"""The model registry: one file per family, each registering keyword-only builders.

Adding a model is one new module in this package that calls ``register_model`` (from
:mod:`trainables.models.api`) and is imported here so that its registration runs. Every
builder takes ``(*, num_classes, in_channels, image_size, pretrained)`` and returns an
``nn.Module`` whose forward gives logits (or, in training mode, a tuple whose first
element is the logits and whose other elements are auxiliary logits); ``build_model``
adds ``weights_path`` on top.
"""

from trainables.models import anet, chromosome, classic, keras_cnns
from trainables.models.api import (
    MODELS,
    Builder,
    ModelSpec,
    build_model,
    forward_flops,
    get_spec,
    list_models,
    load_matching_weights,
    new_linear,
    register_model,
    replace_first_conv,
    with_pretrained_fallback,
)

__all__ = [
    "MODELS",
    "Builder",
    "ModelSpec",
    "anet",
    "build_model",
    "chromosome",
    "classic",
    "forward_flops",
    "get_spec",
    "keras_cnns",
    "list_models",
    "load_matching_weights",
    "new_linear",
    "register_model",
    "replace_first_conv",
    "with_pretrained_fallback",
]
