"""Loading EdgeTAM: the official file's layout strictly, the other family refused by name, the
SHA-256 of ``edgetam.pt``, and the image sizes EdgeTAM can run at."""

import os
import pathlib

import pytest
import torch

from sam2_ros.model import checkpoint as ck
from sam2_ros.model.build import build_model, build_random_model
from sam2_ros.model.config import edgetam_config
from sam2_ros.model.edgetam import EdgeTAM
from sam2_ros.model.hub import hub_cache_dir
from sam2_ros.model.edgetam_checkpoint import (
    check_model_family,
    describe_checkpoint,
    is_edgetam_state_dict,
)


@pytest.fixture(scope="module")
def our_state():
    """Our EdgeTAM's state dict (random weights; its keys are checked against the release below)."""
    return build_random_model("edgetam", 1024, "cpu", seed=1).state_dict()


def _save(state, path):
    torch.save({"model": state}, path)
    return str(path)


def test_official_layout_loads_strictly(edgetam_oracle):
    """The checkpoint written by EdgeTAM's own code has exactly our keys and shapes (timm's
    RepViT names, BatchNorm statistics included), and every one of its tensors is used."""
    edgetam_oracle.model_level()  # the oracle writes the checkpoint (once per session)
    official = torch.load(edgetam_oracle.checkpoint, weights_only=True)["model"]
    ours = EdgeTAM(edgetam_config()).state_dict()
    assert {k: tuple(v.shape) for k, v in official.items()} == {k: tuple(v.shape) for k, v in ours.items()}
    assert any(k.startswith("image_encoder.trunk.body.stages_2.blocks.13.") for k in official)
    assert any(k.endswith("bn.running_var") for k in official)
    net = build_model(str(edgetam_oracle.checkpoint), "edgetam", 1024, "cpu")
    loaded = net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in official.items())


def test_missing_or_extra_key_refused(our_state, tmp_path):
    key = "image_encoder.trunk.body.stages_1.downsample.ffn.conv2.bn.running_mean"
    missing = {k: v for k, v in our_state.items() if k != key}
    with pytest.raises(ck.CheckpointMismatchError, match="1 missing key") as info:
        build_model(_save(missing, tmp_path / "missing.pt"), "edgetam", 1024, "cpu")
    assert key in str(info.value)
    extra = dict(our_state, **{"spatial_perceiver.extra": torch.zeros(3)})
    with pytest.raises(ck.CheckpointMismatchError, match="1 unexpected key"):
        build_model(_save(extra, tmp_path / "extra.pt"), "edgetam", 1024, "cpu")


def test_sam2_checkpoint_refused_for_edgetam(tmp_path):
    sam2 = build_random_model("tiny", 256, "cpu").state_dict()
    path = _save(sam2, tmp_path / "sam2.1_hiera_tiny.pt")
    assert describe_checkpoint(sam2) == "SAM 2.1 hiera tiny"
    with pytest.raises(ck.CheckpointMismatchError, match=r"holds SAM 2\.1 hiera tiny, not EdgeTAM.*model='tiny'"):
        build_model(path, "edgetam", 1024, "cpu")


def test_edgetam_checkpoint_refused_for_sam2(our_state, tmp_path):
    path = _save(our_state, tmp_path / "edgetam.pt")
    assert is_edgetam_state_dict(our_state) and describe_checkpoint(our_state) == "EdgeTAM"
    for size in ("tiny", "large"):
        with pytest.raises(ck.CheckpointMismatchError, match=rf"holds EdgeTAM.*not SAM 2 hiera {size}.*model='edgetam'"):
            build_model(path, size, 256, "cpu")
    check_model_family(our_state, "edgetam")  # its own family passes


def test_options_that_do_not_apply_refused(our_state, tmp_path):
    path = _save(our_state, tmp_path / "edgetam.pt")
    with pytest.raises(ValueError, match="EdgeTAM has one"):
        build_model(path, "edgetam", 1024, "cpu", version="2.1")
    with pytest.raises(ValueError, match="SAM 2's Hiera has none"):
        build_model(path, "tiny", 256, "cpu", fuse=True)


def test_official_file_entry():
    info = ck.official_checkpoint("edgetam")
    assert (info.repo_id, info.filename) == ("facebook/EdgeTAM", "edgetam.pt")
    assert info.sha256 == "ed2d4850b8792c239689b043c47046ec239b6e808a3d9b6ae676c803fd8780df"
    assert info.size == 56116523


def test_cached_official_file_used_without_network(tmp_path, hub_offline):
    """``checkpoint=None`` with ``model="edgetam"`` resolves to ``edgetam.pt`` in the Hugging Face
    Hub cache, offline: the cache's layout (refs/main -> snapshots/<commit>/edgetam.pt -> a blob
    named by the official SHA-256, of the official size)."""
    info = ck.official_checkpoint("edgetam")
    folder = hub_cache_dir() / f"models--{info.repo_id.replace('/', '--')}"
    blob = folder / "blobs" / info.sha256
    blob.parent.mkdir(parents=True)
    with open(blob, "wb") as f:
        f.truncate(info.size)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0" * 40)
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / info.filename).symlink_to(os.path.relpath(blob, snapshot))
    assert pathlib.Path(ck.resolve_checkpoint(None, "edgetam")).resolve() == blob.resolve()


def test_image_sizes():
    for size in (256, 512, 768, 1024):
        assert edgetam_config(size).feat_size == size // 16
    for size in (1000, 320, 0):
        with pytest.raises(ValueError, match="16 x 16 equal windows.*multiple of 256"):
            edgetam_config(size)


def test_runs_at_512_with_rebuilt_tables():
    """At 512 px the position tables follow the 32 x 32 map; memories are still 512 tokens."""
    net = build_random_model("edgetam", 512, "cpu")
    with torch.inference_mode():
        feats = net.encode_image(torch.randn(1, 3, 512, 512))
        assert feats.feat.shape == (1, 256, 32, 32)
        pred = net.predict_masks(net.image_embedding(feats), feats.high_res, torch.tensor([[[200.0, 300.0]]]),
                                 torch.ones(1, 1, dtype=torch.int32), multimask=True)
        mem, pos = net.encode_memory(feats.feat, pred.high_res_masks, pred.object_score_logits, True)
        assert mem.shape == pos.shape == (1, 512, 64)
        out = net.condition_on_memory(feats, mem, pos + net.memory_tpos(0), 0)
        assert out.shape == (1, 256, 32, 32) and torch.isfinite(out).all()
