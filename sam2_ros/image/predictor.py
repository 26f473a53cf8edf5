"""Single-image prompting: embed an image once, prompt it many times (no memory, no rclpy).

Numerically this is Meta's ``SAM2ImagePredictor.predict(..., return_logits=True)``; on top it
keeps an LRU cache of embeddings keyed by image content, so re-prompting a frame seen before
(a UI, a detector re-sending boxes) costs only the decoder.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ..model.build import autocast, build_model, resolve_device, resolve_dtype
from ..model.preprocess import check_image, frame_to_model_coords, to_frame_resolution, to_model_input
from ..model.sam2 import SAM2, ImageFeatures

ArrayLike = Union[np.ndarray, Sequence, Tensor]


@dataclass
class ImageEmbedding:
    """An encoded image: pass it to :meth:`ImagePredictor.segment` instead of the image."""

    features: ImageFeatures  # batch of 1; ``feat`` already includes the no-memory embedding
    orig_hw: Tuple[int, int]
    key: str  # content hash of the image


@dataclass
class SegmentResult:
    logits: Tensor  # (M, H, W) float32 at the image's resolution (or (B, M, H, W) for batched prompts)
    scores: Tensor  # (M,) predicted IoU
    low_res_logits: Tensor  # (M, S/4, S/4), clamped to +/-32: feed one back as ``mask_input``

    @property
    def masks(self) -> Tensor:
        return self.logits > 0


def image_key(image: np.ndarray) -> str:
    """Content hash of an image (shape + bytes): equal pixels, equal key."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((image.shape, str(image.dtype))).encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()


def _as_float_tensor(x: ArrayLike, what: str, last_dim: int, device) -> Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, Tensor) else x, dtype=torch.float32)
    if t.ndim == 0 or t.shape[-1] != last_dim:
        raise ValueError(f"{what} must have shape (..., {last_dim}), got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} contains NaN or infinite values: {t.tolist()}")
    return t.to(device)


class ImagePredictor:
    """Embed once, prompt many times, with an LRU embedding cache.

    Args:
        model: a loaded :class:`~sam2_ros.model.sam2.SAM2`.
        cache_size: embeddings kept (0 disables the cache).
        cache_on_cpu: keep cached embeddings in host memory (moved to the device on use),
            so a large cache does not eat GPU memory.
        dtype: compute dtype (``auto``: bfloat16 on CUDA, float32 on CPU).
    """

    def __init__(self, model: SAM2, cache_size: int = 100, cache_on_cpu: bool = True, dtype: str = "auto") -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.model = model.eval()
        self.device = model.device
        self.dtype = resolve_dtype(dtype, self.device)
        self.image_size = model.cfg.image_size
        self.cache_size = cache_size
        self.cache_on_cpu = cache_on_cpu
        self._cache: "OrderedDict[str, ImageEmbedding]" = OrderedDict()

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: Optional[str] = None,
        model: str = "tiny",
        image_size: int = 1024,
        device: str = "auto",
        cache_size: int = 100,
        cache_on_cpu: bool = True,
        dtype: str = "auto",
    ) -> "ImagePredictor":
        """Load a checkpoint: Meta's file, a Hugging Face Hub id, a folder, a transformers-format SAM 2
        (also an image-only ``Sam2Model``), or ``None`` for the official one of ``model`` (Hub cache);
        ``model="edgetam"``: EdgeTAM (``edgetam.pt``, Hub ``facebook/EdgeTAM``)."""
        net = build_model(checkpoint, model=model, image_size=image_size, device=resolve_device(device),
                          image_only=True)
        return cls(net, cache_size=cache_size, cache_on_cpu=cache_on_cpu, dtype=dtype)

    # ------------------------------------------------------------- embedding
    @torch.inference_mode()
    def embed(self, image: Union[np.ndarray, Sequence[np.ndarray]]) -> Union[ImageEmbedding, List[ImageEmbedding]]:
        """Encode one H x W x 3 uint8 RGB image, or a list of them in one batch.

        Images already in the cache are not encoded again.
        """
        single = isinstance(image, np.ndarray) and image.ndim == 3
        images = [image] if single else list(image)
        keys = []
        for i, img in enumerate(images):
            check_image(img, what="image" if single else f"image {i}")
            keys.append(image_key(img))
        todo = [i for i, k in enumerate(keys) if k not in self._cache]
        fresh = {}
        if todo:
            x = to_model_input([images[i] for i in todo], self.image_size, self.device)
            with autocast(self.device, self.dtype):
                feats = self.model.encode_image(x)
                feats.feat = self.model.image_embedding(feats)
            for j, i in enumerate(todo):
                emb = ImageEmbedding(feats.select(j), tuple(images[i].shape[:2]), keys[i])
                fresh[keys[i]] = emb
                self._remember(emb)
        out = []
        for k in keys:
            emb = fresh.get(k) or self._cache[k]
            if k in self._cache:
                self._cache.move_to_end(k)
            out.append(emb)
        return out[0] if single else out

    def _remember(self, emb: ImageEmbedding) -> None:
        if self.cache_size == 0:
            return
        stored = ImageEmbedding(emb.features.to("cpu"), emb.orig_hw, emb.key) if self.cache_on_cpu else emb
        self._cache[emb.key] = stored
        self._cache.move_to_end(emb.key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def clear_cache(self) -> None:
        self._cache.clear()

    @property
    def cache_len(self) -> int:
        return len(self._cache)

    # ------------------------------------------------------------- prompting
    @torch.inference_mode()
    def segment(
        self,
        image_or_embedding: Union[np.ndarray, ImageEmbedding],
        points: Optional[ArrayLike] = None,
        labels: Optional[ArrayLike] = None,
        box: Optional[ArrayLike] = None,
        mask_input: Optional[ArrayLike] = None,
        multimask: bool = True,
    ) -> SegmentResult:
        """Segment with points (K, 2) x, y pixels + labels (K,) (1 fg, 0 bg), a box (4,)
        x0, y0, x1, y1, and/or ``mask_input`` (1, S/4, S/4) low-res logits from an earlier call.

        Batched prompts on the same image: points (B, K, 2) + labels (B, K) and/or boxes (B, 4)
        give (B, M, H, W) logits. ``multimask`` returns 3 candidates (ambiguous prompts such as
        one click), else 1.
        """
        emb = image_or_embedding if isinstance(image_or_embedding, ImageEmbedding) else self.embed(image_or_embedding)
        dev = self.device
        coords = labs = None
        batched = False
        if (points is None) != (labels is None):
            raise ValueError("points and labels go together: give both (labels: 1 foreground, 0 background) or neither")
        if points is not None:
            coords = _as_float_tensor(points, "points", 2, dev)
            labs = torch.as_tensor(np.asarray(labels), dtype=torch.int32, device=dev)
            if coords.ndim == 2:
                coords, labs = coords[None], labs[None]
            else:
                batched = True
            if labs.shape != coords.shape[:2]:
                raise ValueError(f"labels shape {tuple(labs.shape)} does not match points {tuple(coords.shape)}")
            if not torch.isin(labs, torch.tensor([0, 1], device=dev)).all():
                raise ValueError(f"labels must be 1 (foreground) or 0 (background), got {labs.tolist()}")
            coords = frame_to_model_coords(coords, emb.orig_hw, self.image_size)
        if box is not None:
            boxes = _as_float_tensor(box, "box", 4, dev)
            batched = batched or boxes.ndim == 2
            corners = frame_to_model_coords(boxes.reshape(-1, 2, 2), emb.orig_hw, self.image_size)  # (B, 2, 2)
            corner_labels = torch.tensor([[2, 3]], dtype=torch.int32, device=dev).repeat(corners.shape[0], 1)
            # The box goes first, then any clicks (the order SAM 2 was trained with).
            if coords is None:
                coords, labs = corners, corner_labels
            else:
                coords = torch.cat((corners, coords.expand(corners.shape[0], -1, -1)), dim=1)
                labs = torch.cat((corner_labels, labs.expand(corners.shape[0], -1)), dim=1)
        mask = None
        if mask_input is not None:
            mask = torch.as_tensor(np.asarray(mask_input) if not isinstance(mask_input, Tensor) else mask_input, dtype=torch.float32, device=dev)
            low = self.model.cfg.low_res_size
            if mask.ndim == 3:
                mask = mask[None]
            if mask.ndim != 4 or mask.shape[-2:] != (low, low) or mask.shape[1] != 1:
                raise ValueError(f"mask_input must be (1, {low}, {low}) low-res logits (a SegmentResult.low_res_logits row), got {tuple(mask.shape)}")
        feats = emb.features if emb.features.feat.device == dev else emb.features.to(dev)
        with autocast(dev, self.dtype):
            masks, ious, _, _ = self.model.decode(feats.feat, feats.high_res, coords, labs, mask, multimask)
        masks = masks.float()
        logits = to_frame_resolution(masks, emb.orig_hw)  # (B, M, H, W)
        low = masks.clamp(-32.0, 32.0)
        if not batched:
            return SegmentResult(logits[0], ious[0].float(), low[0])
        return SegmentResult(logits, ious.float(), low)
