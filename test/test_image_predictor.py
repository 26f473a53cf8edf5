"""ImagePredictor behaviour: the embedding cache, batched embedding, batched prompts, errors.
(Numerics against Meta's predictor: test_model_parity.py.)"""

import numpy as np
import pytest
import torch

from sam2_ros.image.predictor import ImagePredictor
from sam2_ros.model.build import build_random_model


@pytest.fixture(scope="module")
def model():
    return build_random_model("tiny", 128, "cpu")


@pytest.fixture(scope="module")
def images(bunny_frames):
    return bunny_frames(4, 160, 96)


def test_cache_is_lru_and_bounded(model, images, monkeypatch):
    pred = ImagePredictor(model, cache_size=2)
    calls = []
    encode = model.encode_image
    monkeypatch.setattr(model, "encode_image", lambda x: calls.append(x.shape[0]) or encode(x))
    a = pred.embed(images[0])
    assert pred.embed(images[0].copy()) is not None and calls == [1]  # same content: cache hit
    pred.embed(images[1])
    pred.embed(images[0])  # refreshes 0: 1 is now the oldest
    pred.embed(images[2])  # evicts 1
    assert pred.cache_len == 2 and calls == [1, 1, 1]
    pred.embed(images[1])
    assert calls == [1, 1, 1, 1]
    assert a.features.feat.device.type == "cpu"
    pred.clear_cache()
    assert pred.cache_len == 0


def test_several_images_in_one_call_equal_one_by_one(model, images):
    one = ImagePredictor(model, cache_size=0)
    many = ImagePredictor(model, cache_size=0)
    batch = many.embed(images[:3])
    for img, emb in zip(images[:3], batch):
        single = one.embed(img)
        torch.testing.assert_close(emb.features.feat, single.features.feat, rtol=1e-5, atol=1e-5)
        r1 = one.segment(single, points=[[50, 40]], labels=[1])
        r2 = many.segment(emb, points=[[50, 40]], labels=[1])
        torch.testing.assert_close(r1.logits, r2.logits, rtol=1e-4, atol=1e-4)


def test_batched_prompts(model, images):
    pred = ImagePredictor(model)
    boxes = [[10, 10, 80, 60], [60, 20, 150, 90]]
    res = pred.segment(images[0], box=boxes, multimask=False)
    assert res.logits.shape == (2, 1, 96, 160) and res.scores.shape == (2, 1)
    for i, box in enumerate(boxes):
        single = pred.segment(images[0], box=box, multimask=False)
        torch.testing.assert_close(res.logits[i], single.logits, rtol=1e-4, atol=1e-4)
    res = pred.segment(images[0], points=[[[20, 20]], [[100, 50]]], labels=[[1], [1]])
    assert res.logits.shape == (2, 3, 96, 160)
    assert pred.segment(images[0], points=[[20, 20]], labels=[1]).low_res_logits.shape == (3, 32, 32)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(points=[[1, 2]]), "go together"),
        (dict(points=[[np.nan, 2]], labels=[1]), "NaN"),
        (dict(points=[[1, 2]], labels=[3]), "1 \\(foreground\\) or 0"),
        (dict(points=[[1, 2], [3, 4]], labels=[1]), "does not match"),
        (dict(box=[1, 2, 3]), "shape"),
        (dict(mask_input=np.zeros((1, 16, 16))), "low-res logits"),
    ],
)
def test_bad_prompts_say_what_is_wrong(model, images, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImagePredictor(model).segment(images[0], **kwargs)


def test_bad_images_and_settings(model):
    pred = ImagePredictor(model)
    with pytest.raises(ValueError, match="uint8"):
        pred.embed(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="H x W x 3"):
        pred.embed(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="cache_size"):
        ImagePredictor(model, cache_size=-1)
