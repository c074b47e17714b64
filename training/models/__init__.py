"""Model zoo: `build_model(variant)` for segmentation; `TinyEfficientViTSeg` with the default ("tiny") config."""

from training.models.efficientvit import (
    VARIANTS,
    EfficientViTConfig,
    TinyEfficientViTSeg,
    build_model,
    count_parameters,
    pretrained_card,
    pretrained_onnx_path,
)

__all__ = ["VARIANTS", "EfficientViTConfig", "TinyEfficientViTSeg", "build_model", "count_parameters", "pretrained_card", "pretrained_onnx_path"]
