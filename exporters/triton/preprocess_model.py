"""Source of the Python-backend model that turns encoded images into the model's input.

The preprocessing must be exactly the toolkit's (``deploy_ran.images``): the same RGB conversion,
resize, crop and normalisation, or a served model would disagree with ``infer`` on the same
files. So the model's source is generated from those very functions (``inspect.getsource``), not
from a copy that could drift; it needs only numpy and Pillow on the server (NVIDIA's Triton
container has numpy; add Pillow with ``pip install pillow`` in the container or an execution
environment). The preprocessing parameters come from the config's ``preprocessing`` parameter.
"""

from __future__ import annotations

import inspect

from deploy_ran import images

_HEADER = '''"""Triton Python-backend model written by deploy-ran: encoded images -> model input.

Decoding and preprocessing are deploy_ran.images' own functions (copied below when the
repository was written), with the parameters in this model's config.pbtxt.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from PIL import Image, ImageOps

'''

_MODEL = '''

def decode(data: bytes) -> Image.Image:
    """Encoded bytes -> 8-bit RGB, EXIF orientation applied (as deploy_ran.images.load_rgb)."""
    with Image.open(io.BytesIO(data)) as img:
        img = ImageOps.exif_transpose(img)
        img.load()
        return to_rgb(img)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.params = json.loads(config["parameters"]["preprocessing"]["string_value"])
        self.output = self.params["output"]

    def execute(self, requests):
        responses = []
        for request in requests:
            blobs = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            try:
                arrays = [preprocess(decode(bytes(b)), self.params) for b in blobs.reshape(-1)]
            except Exception as exc:  # a bad image fails its request, never the server
                responses.append(
                    pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(f"cannot decode image: {type(exc).__name__}: {exc}")
                    )
                )
                continue
            batch = np.stack(arrays).astype(np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.output, batch)]))
        return responses
'''


def model_source() -> str:
    """``model.py`` of the preprocessing model."""
    # The constants those functions read travel with them (one source of truth: images.py).
    constants = f"RESIZE_BUDGET = {images.RESIZE_BUDGET!r}\n"
    parts = [constants, inspect.getsource(images.to_rgb), inspect.getsource(images.preprocess)]
    return _HEADER + "\n\n".join(parts) + _MODEL
