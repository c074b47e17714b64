"""ONNX export: one self-contained file, dynamic batch, checked, parity-tested, and held under a size budget."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.files import atomic_write_bytes
from training.preprocess import HEIGHT, WIDTH

MAX_ONNX_BYTES = 300_000  # edge deployment budget: the exported file must stay below this
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


class OnnxSizeError(RuntimeError):
    """The exported model reached the edge-deployment size budget."""


def export_bytes(model: nn.Module, input_shape: tuple[int, ...] = (1, 1, HEIGHT, WIDTH), output_names: tuple[str, ...] = (OUTPUT_NAME,)) -> bytes:
    """Plain `torch.onnx.export(..., external_data=False)` with a dynamic batch axis; returns the file's bytes.

    The model is exported as given (call `.fuse()` first to fold Conv-BN pairs). The first axis of the
    input and of every output is dynamic.
    """
    was_training = model.training
    model.eval()
    example = torch.zeros(input_shape, dtype=torch.float32, device=next(model.parameters()).device)
    batch = torch.export.Dim("batch", min=1, max=1024)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), _quiet_exporter(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=list(output_names),
            dynamic_shapes=({0: batch},),
            external_data=False,
        )
    model.train(was_training)
    return buffer.getvalue()


def strip_debug_metadata(onnx_bytes: bytes) -> bytes:
    """Drops the exporter's per-node debug metadata (Python stack traces, FX names): ~60% of a tiny model's file.

    The graph, weights and shapes are untouched; ONNX Runtime results are identical.
    """
    import onnx

    proto = onnx.load_from_string(onnx_bytes)
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for value in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info, *proto.graph.initializer]:
        del value.metadata_props[:]
    return proto.SerializeToString()


class FlipAveraged(nn.Module):
    """A model averaged over each input and its three flips, in one graph: what `evaluate --flips` scores
    (training.inference.flip_averaged), as one ONNX file for a device that can afford 4x the work.

        export_onnx(FlipAveraged(build_model("base", pretrained=True)), "pupil_flips.onnx")

    The four views run as one batch; each view's pupil probability is flipped back and the four are averaged. The
    output is the log of the averaged class probabilities (B, 2, H, W), so its softmax is that mean and it reads
    like the model's own logits. Same weights; the flips add a few KB to the file (the shipped base model: 269 KB, 263
    KB as one view)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def fuse(self) -> "FlipAveraged":
        if hasattr(self.model, "fuse"):
            self.model.fuse()
        return self

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        from training.inference import FLIPS  # the views flip_averaged uses (axes 2, 3 of the input and of the logits)

        count = image.shape[0]
        views = torch.cat([image.flip(axes) if axes else image for axes in FLIPS])
        log_probability = torch.log_softmax(self.model(views), dim=1)
        back = [log_probability[k * count:(k + 1) * count] for k in range(len(FLIPS))]
        back = [view.flip(axes) if axes else view for view, axes in zip(back, FLIPS)]
        return torch.logsumexp(torch.stack(back), dim=0) - float(np.log(len(FLIPS)))


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    input_shape: tuple[int, ...] = (1, 1, HEIGHT, WIDTH),
    output_names: tuple[str, ...] = (OUTPUT_NAME,),
    max_bytes: int = MAX_ONNX_BYTES,
    tolerance: float = 1e-4,
) -> Path:
    """Exports `model` to one self-contained ONNX file at `path`, atomically, and verifies it.

    A fused copy is exported (the model passed in is not modified), debug metadata is stripped, the file is
    validated with `onnx.checker`, ONNX Runtime is compared with torch (within tolerance x the output scale,
    batch of 2 to exercise the dynamic axis), and OnnxSizeError is raised if the file reaches max_bytes.
    """
    import copy

    import onnx

    path = Path(path)
    deployable = copy.deepcopy(model).float().cpu().eval()
    if hasattr(deployable, "fuse"):
        deployable.fuse()
    data = strip_debug_metadata(export_bytes(deployable, input_shape, output_names))
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    if len(data) >= max_bytes:
        raise OnnxSizeError(f"{path}: exported ONNX is {len(data):,} bytes, over the {max_bytes:,}-byte budget")
    check_parity(deployable, data, input_shape, tolerance)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    return path


def parity_bound(reference: np.ndarray, tolerance: float = 1e-4) -> float:
    """The allowed |ONNX - torch| for an output: tolerance x its scale (max |value|, at least 1)."""
    return tolerance * max(1.0, float(np.abs(reference).max()))


def check_parity(model: nn.Module, onnx_bytes: bytes, input_shape: tuple[int, ...], tolerance: float = 1e-4) -> float:
    """Runs torch and ONNX Runtime on the same random batch of 2; raises unless every output element is within
    tolerance x the output's scale (max |value|, at least 1). Returns the largest absolute difference.

    Scale-relative because a trained model's logits reach +-20 and a logit near 0 is often the sum of two large
    terms: float32 re-association (Conv-BN folding, ONNX Runtime's fused kernels) moves it by up to ~1e-5 x scale.
    The models' attention logits are bounded (cosine attention), so their own float32 error stays ~1e-6 x scale;
    an export bug moves outputs by orders of magnitude more.
    """
    generator = torch.Generator().manual_seed(0)
    example = torch.rand((2, *input_shape[1:]), generator=generator)
    with torch.no_grad():
        expected = [output.numpy() for output in _as_tuple(model(example))]
    actual = ort_session(onnx_bytes).run(None, {INPUT_NAME: example.numpy()})
    differences = [float(np.abs(reference - result).max()) for reference, result in zip(expected, actual)]
    for reference, difference in zip(expected, differences):
        allowed = parity_bound(reference, tolerance)
        if difference > allowed:
            raise AssertionError(f"ONNX Runtime differs from torch by {difference:.2e}, over {allowed:.2e} ({tolerance:.0e} x the output "
                                 f"scale {np.abs(reference).max():.3g})")
    return max(differences)


def _as_tuple(outputs) -> tuple[torch.Tensor, ...]:
    return tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)


def ort_session(model: bytes | str | os.PathLike, threads: int = 1):
    """ONNX Runtime CPU session with `threads` intra-op threads (0 = all cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class _quiet_exporter:
    """Silences torch.onnx's progress logging (it prints several lines per export)."""

    def __enter__(self):
        self._loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir")]
        self._levels = [logger.level for logger in self._loggers]
        for logger in self._loggers:
            logger.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        for logger, level in zip(self._loggers, self._levels):
            logger.setLevel(level)
