"""TinyEfficientViTSeg: an EfficientViT-MSRA style encoder with a skip-connection decoder, at edge scale.

Building blocks follow microsoft/Cream EfficientViT (Conv-BN pairs that fuse for export, depthwise token
mixing, a small FFN and cascaded group attention over local windows); the decoder fuses every encoder scale from
the stride-4 stem up, and a sub-pixel head (stride-4 logits plus a zero-sum stride-2 correction from the image
itself) keeps pupil boundaries sharp at full resolution without any full-resolution feature map.

    >>> from training.models import TinyEfficientViTSeg
    >>> TinyEfficientViTSeg()(torch.zeros(1, 1, 96, 160)).shape
    torch.Size([1, 2, 96, 160])
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class ConvBN(nn.Sequential):
    """Conv2d without bias followed by BatchNorm2d; `fuse()` folds the pair into one Conv2d for export."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_channels))
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        conv, bn = self.c, self.bn
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        fused = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            groups=conv.groups, bias=True,
        ).to(conv.weight.device)
        fused.weight.copy_(conv.weight * scale[:, None, None, None])
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        return fused


class Residual(nn.Module):
    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class FFN(nn.Sequential):
    """Pointwise expand -> ReLU -> pointwise project (the project BN starts at zero: the block starts as identity)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__(ConvBN(dim, hidden_dim), nn.ReLU(inplace=True), ConvBN(hidden_dim, dim, bn_weight_init=0.0))


MAX_LOGIT_SCALE = math.log(100.0)  # attention logits stay within +-100


class CascadedGroupAttention(nn.Module):
    """Cascaded group attention (EfficientViT-MSRA): each head attends over its own channel split of the input; from the
    second head on, the first split-width channels of the previous head's output are added to that split first (the
    cascade: later heads refine what earlier ones found at no extra cost). Attention logits are cosine similarities
    times a learned per-head temperature (bounded).

    Input and output are (B, C, h, w) windows; attention runs over the h*w tokens of each window.
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float = 2.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.key_dim = key_dim
        # Cosine attention (Swin V2): unit-length queries and keys times a learned per-head temperature <= 100.
        # Plain q.k products grew to |logits| > 200 in trained models, which made the float32 output of deep layers
        # ill-conditioned (torch float32 vs float64 up to 6e-3 at logit scale 19); bounded logits keep it ~1e-6.
        self.logit_scale = nn.Parameter(torch.full((num_heads,), math.log(10.0)))
        self.split_dim = dim // num_heads
        self.value_dim = int(attn_ratio * self.split_dim)
        self.qkvs = nn.ModuleList(
            ConvBN(self.split_dim, 2 * key_dim + self.value_dim) for _ in range(num_heads)
        )
        # Depthwise conv on each head's queries: local context before the global mix.
        self.query_convs = nn.ModuleList(
            ConvBN(key_dim, key_dim, 3, padding=1, groups=key_dim) for _ in range(num_heads)
        )
        self.proj = nn.Sequential(nn.ReLU(), ConvBN(self.value_dim * num_heads, dim, bn_weight_init=0.0))

    def attention_logits(self, q: torch.Tensor, k: torch.Tensor, head: int) -> torch.Tensor:
        """(B, K, N) queries and keys -> (B, N, N) logits: cosine similarity x the head's temperature, so within
        +-exp(MAX_LOGIT_SCALE) however large the projections grow."""
        temperature = self.logit_scale[head].clamp(max=MAX_LOGIT_SCALE).exp()
        return (F.normalize(q, dim=1).transpose(1, 2) @ F.normalize(k, dim=1)) * temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        splits = x.chunk(self.num_heads, dim=1)
        outputs = []
        head_input = splits[0]
        for head, (qkv_layer, query_conv) in enumerate(zip(self.qkvs, self.query_convs)):
            if head > 0:
                head_input = outputs[-1][:, : self.split_dim] + splits[head]  # the cascade
            qkv = qkv_layer(head_input)  # (B, 2K+V, h, w)
            q, k, v = qkv.split([self.key_dim, self.key_dim, self.value_dim], dim=1)
            q = query_conv(q)
            attn = self.attention_logits(q.flatten(2), k.flatten(2), head).softmax(dim=-1)  # (B, h*w, h*w)
            v = v.flatten(2)  # (B, V, h*w)
            out = (v @ attn.transpose(1, 2)).view(batch, self.value_dim, height, width)  # (B, V, h, w)
            outputs.append(out)
        return self.proj(torch.cat(outputs, dim=1))


class LocalWindowAttention(nn.Module):
    """Splits (B, C, H, W) into window_size x window_size windows (zero-padded) and runs attention in each."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, window_size: int, attn_ratio: float = 2.0) -> None:
        super().__init__()
        self.window_size = window_size
        self.attn = CascadedGroupAttention(dim, key_dim, num_heads, attn_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        ws = self.window_size
        if height <= ws and width <= ws:
            return self.attn(x)
        pad_h, pad_w = (-height) % ws, (-width) % ws
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        rows, cols = (height + pad_h) // ws, (width + pad_w) // ws
        windows = (
            x.view(batch, channels, rows, ws, cols, ws)
            .permute(0, 2, 4, 1, 3, 5)
            .reshape(batch * rows * cols, channels, ws, ws)
        )  # (B*nW, C, ws, ws)
        windows = self.attn(windows)
        x = (
            windows.view(batch, rows, cols, channels, ws, ws)
            .permute(0, 3, 1, 4, 2, 5)
            .reshape(batch, channels, rows * ws, cols * ws)
        )
        return x[:, :, :height, :width]


class EfficientViTBlock(nn.Module):
    """Depthwise token mixing -> local window attention (if num_heads > 0) -> FFN, each residual.

    num_heads == 0 gives a conv-only block: used in the stride-8 stage, where window attention over 4,000 tokens
    (400x640 input) cost more than it gave, in training on the CPU and in 1-thread ONNX Runtime latency.
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, window_size: int, mlp_ratio: float) -> None:
        super().__init__()
        self.token_mixer = Residual(ConvBN(dim, dim, 3, padding=1, groups=dim, bn_weight_init=0.0))
        self.attention = (
            Residual(LocalWindowAttention(dim, key_dim, num_heads, window_size)) if num_heads > 0 else nn.Identity()
        )
        self.ffn = Residual(FFN(dim, int(dim * mlp_ratio)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.attention(self.token_mixer(x)))


class Downsample(nn.Sequential):
    """Stride-2 depthwise conv then pointwise projection: halves H and W (ceil), changes channels."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__(
            ConvBN(in_dim, in_dim, 3, stride=2, padding=1, groups=in_dim),
            ConvBN(in_dim, out_dim),
            nn.ReLU(inplace=True),
        )


@dataclass(frozen=True)
class EfficientViTConfig:
    embed_dims: tuple[int, ...] = (8, 16, 24)  # channels of the stages at stride 8, 16, 32
    depths: tuple[int, ...] = (1, 1, 1)  # blocks per stage
    num_heads: tuple[int, ...] = (0, 1, 2)  # attention heads per stage (0: conv-only blocks)
    key_dim: int = 4  # query/key channels per head
    window_size: int = 7  # local attention window (tokens per side)
    mlp_ratio: float = 2.0  # FFN hidden width / stage width
    stem_dim: int = 8  # channels of the stride-4 stem (the highest-resolution skip)
    decoder_dim: int = 16  # channels of the decoder from stride 32 up to stride 4
    in_channels: int = 1  # grayscale infrared
    num_classes: int = 2  # background, pupil


# Variants: a table of configs and one builder (`build_model`). Every variant stays under 60k parameters and
# exports to a self-contained ONNX file under 300 KB (tests/test_models.py checks both).
VARIANTS: dict[str, EfficientViTConfig] = {
    "tiny": EfficientViTConfig(),
    "small": EfficientViTConfig(embed_dims=(16, 24, 32), depths=(1, 1, 2), num_heads=(0, 2, 2)),
    "base": EfficientViTConfig(  # the largest that fits the 60k budget (54k)
        embed_dims=(16, 32, 48), depths=(1, 1, 2), num_heads=(0, 2, 3), key_dim=8, stem_dim=16, decoder_dim=16
    ),
}


class Encoder(nn.Module):
    """Returns features at strides 4 (convolutional stem) and 8, 16, 32 (EfficientViT stages).

    The stem is one overlapping 7x7 convolution at stride 4 (a patch embedding, as in ConvNeXt but overlapping): no
    feature map at stride 2, whose normalization, activation and their gradients cost ~20 % of a CPU training step.
    Detail finer than stride 4 reaches the output through the head's stride-2 path on the image itself.
    """

    def __init__(self, cfg: EfficientViTConfig) -> None:
        super().__init__()
        self.stem = nn.Sequential(ConvBN(cfg.in_channels, cfg.stem_dim, 7, stride=4, padding=3), nn.ReLU(inplace=True))
        self.stages = nn.ModuleList()
        in_dim = cfg.stem_dim
        for dim, depth, heads in zip(cfg.embed_dims, cfg.depths, cfg.num_heads):
            blocks = [Downsample(in_dim, dim)]
            blocks += [EfficientViTBlock(dim, cfg.key_dim, heads, cfg.window_size, cfg.mlp_ratio) for _ in range(depth)]
            self.stages.append(nn.Sequential(*blocks))
            in_dim = dim

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [self.stem(x)]  # (B, S, H/4, W/4)
        for stage in self.stages:
            features.append(stage(features[-1]))  # (B, C_i, H/8|16|32, W/8|16|32)
        return features


def _refine(dim: int) -> nn.Sequential:
    return nn.Sequential(ConvBN(dim, dim, 3, padding=1, groups=dim), nn.ReLU(inplace=True))


class SkipDecoder(nn.Module):
    """FPN-style top-down decoder over the encoder scales at strides 4 to 32; returns stride-4 features.

    Strides 32 -> 16 -> 8 -> 4 run at decoder_dim: 1x1 lateral per scale, nearest upsample, add, depthwise refine.
    """

    def __init__(self, encoder_dims: list[int], decoder_dim: int) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(ConvBN(dim, decoder_dim) for dim in encoder_dims)
        self.refines = nn.ModuleList(_refine(decoder_dim) for _ in encoder_dims[:-1])

    def forward(self, pyramid: list[torch.Tensor]) -> torch.Tensor:
        x = self.laterals[-1](pyramid[-1])  # (B, D, H/32, W/32)
        for level in range(len(pyramid) - 2, -1, -1):
            skip = self.laterals[level](pyramid[level])  # (B, D, H/16, then H/8, then H/4)
            # Nearest upsampling is ~3x cheaper than bilinear in ONNX Runtime; the depthwise refine smooths it.
            x = self.refines[level](F.interpolate(x, size=skip.shape[-2:], mode="nearest") + skip)
        return x  # (B, D, H/4, W/4)


class ZeroMeanConv2d(nn.Module):
    """A convolution whose kernels each sum to zero: it sees local contrast (edges), never the absolute gray level, so
    a brighter or darker camera shifts nothing. Zero-sum by construction (each kernel's last weight is minus the sum
    of the others): no weight direction that the loss cannot see, which Adam would otherwise random-walk. `fuse()`
    returns the plain Conv2d (export)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding = in_channels, out_channels, (kernel_size, kernel_size), (stride, stride), (padding, padding)
        fan_in = in_channels * kernel_size * kernel_size
        self.free = nn.Parameter(torch.empty(out_channels, fan_in - 1).uniform_(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in)))  # nn.Conv2d's default range

    @property
    def weight(self) -> torch.Tensor:
        """(out, in, k, k) kernels, each summing to zero."""
        full = torch.cat([self.free, -self.free.sum(dim=1, keepdim=True)], dim=1)
        return full.view(self.out_channels, self.in_channels, *self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, None, self.stride, self.padding)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        plain = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding, bias=False).to(self.free.device)
        plain.weight.copy_(self.weight)
        return plain


class SubPixelHead(nn.Module):
    """Full-resolution logits without a full-resolution feature map (dense upsampling convolution).

    A 1x1 conv on the stride-4 decoder features predicts the 4x4 block of logits under each position; a zero-mean
    3x3 conv at stride 2 on the input image adds a 2x2 correction from the local contrast, so the pupil edge falls
    inside a stride-4 block where the image puts it. Pixel shuffle rearranges both. Only the logits of classes 1..
    are computed: class 0's logit is 0 (a softmax does not change when every logit moves together), which halves the
    full-resolution work. Costs at 400x640 in ONNX Runtime (1 thread): ~0.9 ms for both shuffles and the add.
    """

    def __init__(self, decoder_dim: int, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.coarse = nn.Conv2d(decoder_dim, 16 * (num_classes - 1), 1)  # 4x4 sub-pixels per class at stride 4
        self.fine = ZeroMeanConv2d(in_channels, 4 * (num_classes - 1), 3, stride=2, padding=1)  # 2x2 sub-pixels at stride 2

    def forward(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        coarse = F.pixel_shuffle(self.coarse(features), 4)[:, :, :height, :width]  # (B, classes - 1, H, W)
        logits = coarse + F.pixel_shuffle(self.fine(image), 2)  # (B, classes - 1, H, W)
        return torch.cat([torch.zeros_like(logits[:, :1]), logits], dim=1)  # (B, classes, H, W)


PUPIL_PRIOR = 0.01  # initial pupil probability of every pixel


class TinyEfficientViTSeg(nn.Module):
    """Pupil segmentation: (B, 1, H, W) grayscale in [0, 1] -> (B, num_classes, H, W) logits."""

    def __init__(self, config: EfficientViTConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = config or EfficientViTConfig()
        if overrides:
            cfg = EfficientViTConfig(**{**asdict(cfg), **overrides})
        if not len(cfg.embed_dims) == len(cfg.depths) == len(cfg.num_heads):
            raise ValueError("embed_dims, depths and num_heads must have the same length")
        if cfg.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, not {cfg.num_classes}")
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = SkipDecoder([cfg.stem_dim, *cfg.embed_dims], cfg.decoder_dim)
        # Sub-pixel output (learned 4x and 2x upsampling): sharper than bilinear and far cheaper at 400x640.
        self.head = SubPixelHead(cfg.decoder_dim, cfg.in_channels, cfg.num_classes)
        with torch.no_grad():  # start at the class prior (the pupil is ~1% of a frame), not at 50/50
            self.head.coarse.bias.fill_(math.log(PUPIL_PRIOR / (1 - PUPIL_PRIOR)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height % 2 or width % 2:  # odd sizes: pad to even, crop the output back
            x = F.pad(x, (0, width % 2, 0, height % 2), mode="replicate")
        logits = self.head(self.decoder(self.encoder(x)), x)  # (B, classes, H, W) (H, W even)
        return logits[:, :, :height, :width]

    @torch.no_grad()
    def fuse(self) -> "TinyEfficientViTSeg":
        """Folds every Conv-BN pair into one Conv2d (and zero-mean kernels into plain ones), in place (eval-mode
        numerics unchanged). Returns self."""
        _fuse_children(self)
        return self


def _fuse_children(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, (ConvBN, ZeroMeanConv2d)):
            setattr(module, name, child.fuse())
        else:
            _fuse_children(child)


WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"  # training/weights: shipped pretrained weights + model card


def pretrained_card() -> dict:
    """The model card of the shipped weights (training/weights/pretrained.json): variant, files, recipe, metrics."""
    path = WEIGHTS_DIR / "pretrained.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no pretrained weights are shipped with this installation")
    return json.loads(path.read_text())


def pretrained_onnx_path() -> Path:
    """The shipped ONNX model (`python -m training.predict --model pretrained` uses it)."""
    return WEIGHTS_DIR / pretrained_card()["onnx"]


def build_model(variant: str = "tiny", pretrained: bool = False) -> TinyEfficientViTSeg:
    """A TinyEfficientViTSeg of the named variant; pretrained=True loads the shipped weights (timm style), trained
    on synthetic frames only (training/weights/pretrained.json says how), to predict with or to fine-tune."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown model variant {variant!r}; choose one of {sorted(VARIANTS)}")
    model = TinyEfficientViTSeg(VARIANTS[variant])
    if pretrained:
        card = pretrained_card()
        if card["variant"] != variant:
            raise ValueError(f"pretrained weights ship for the {card['variant']!r} variant only, not {variant!r}")
        model.load_state_dict(torch.load(WEIGHTS_DIR / card["state_dict"], map_location="cpu", weights_only=True))
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
