"""SAM 2 / 2.1 and EdgeTAM in plain PyTorch (no rclpy, no torchvision, no timm, no hydra).

``build_model`` loads checkpoints strictly (Meta's files, Hugging Face Hub ids, transformers-format
SAM 2; see ``checkpoint``); ``SAM2`` exposes the per-frame steps
(image encoding, prompting, memory attention, memory encoding) that the tracker and the image
predictor compose. Beside it, for text prompts: an open-vocabulary detector through the optional
``transformers`` (``text_detector``, imported on demand) and the prompts' parsing (``text_query``).
"""

from .build import build_model, build_random_model
from .config import MODEL_NAMES, EdgeTAMConfig, SAM2Config, edgetam_config, sam2_config
from .edgetam import EdgeTAM
from .sam2 import SAM2, ImageFeatures, MaskPrediction

__all__ = ["SAM2", "SAM2Config", "EdgeTAM", "EdgeTAMConfig", "ImageFeatures", "MaskPrediction", "MODEL_NAMES",
           "build_model", "build_random_model", "edgetam_config", "sam2_config"]
