"""Tests of sam2_ros.model.checkpoint: the official table, where a checkpoint is found, safe
reading, strict loading.

Downloads through the Hugging Face Hub are tested in test_hub.py (a Hub on loopback), the
transformers format in test_transformers_format.py. Key matching is checked on the state dicts
of Meta's official models (package ``sam2``, test oracle only) built with random weights at
image_size 256.
"""

from __future__ import annotations

import functools
import os
import pickle
import re
from pathlib import Path
from typing import Dict

import pytest
import torch

from sam2_ros.model import checkpoint as ck
from sam2_ros.model.checkpoint import CheckpointError, CheckpointMismatchError, CheckpointNotFoundError
from sam2_ros.model.hub import is_hub_id

CONFIGS = {
    ("tiny", "2.1"): "configs/sam2.1/sam2.1_hiera_t.yaml",
    ("small", "2.1"): "configs/sam2.1/sam2.1_hiera_s.yaml",
    ("tiny", "2.0"): "configs/sam2/sam2_hiera_t.yaml",
    ("small", "2.0"): "configs/sam2/sam2_hiera_s.yaml",
}


@functools.lru_cache(maxsize=None)
def _build_official_cached(size: str, version: str, image_size: int = 256) -> torch.nn.Module:
    return build_official(size, version, image_size)


def build_official(size: str, version: str, image_size: int = 256) -> torch.nn.Module:
    """A fresh official SAM2Base (random weights) built by Meta's own code."""
    build_sam = pytest.importorskip("sam2.build_sam", reason="Meta's sam2 package (test oracle)")
    return build_sam.build_sam2(
        CONFIGS[(size, version)], None, device="cpu",
        hydra_overrides_extra=[f"++model.image_size={image_size}"],
    )


def official_sd(size: str, version: str) -> Dict[str, torch.Tensor]:
    """The state dict of the session's cached official model (do not modify its tensors)."""
    return _build_official_cached(size, version).state_dict()


def sam1_state_dict() -> Dict[str, torch.Tensor]:
    """A small dict with the key layout of a SAM (v1) ViT-B checkpoint."""
    sd = {
        "image_encoder.pos_embed": torch.zeros(1, 4, 4, 768),
        "image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16),
        "image_encoder.patch_embed.proj.bias": torch.zeros(768),
        "image_encoder.neck.0.weight": torch.zeros(256, 768, 1, 1),
        "image_encoder.neck.1.weight": torch.zeros(256),
        "prompt_encoder.point_embeddings.0.weight": torch.zeros(1, 256),
        "mask_decoder.iou_token.weight": torch.zeros(1, 256),
    }
    for i in range(12):
        sd[f"image_encoder.blocks.{i}.attn.qkv.weight"] = torch.zeros(3, 2)
    return sd


# --------------------------------------------------------------------------------------------
# the table of official files
# --------------------------------------------------------------------------------------------


def test_official_table():
    assert set(ck.OFFICIAL_CHECKPOINTS) == {"tiny", "small", "base_plus", "large", "edgetam"}
    for name, info in ck.OFFICIAL_CHECKPOINTS.items():
        if name == "edgetam":
            continue
        assert info.model == name and info.version == "2.1"
        assert info.filename == f"sam2.1_hiera_{name}.pt"
        assert info.repo_id == "facebook/sam2.1-hiera-" + name.replace("_", "-")  # Meta's Hub ids
        assert info.url == f"https://huggingface.co/{info.repo_id}/resolve/main/{info.filename}"
        assert re.fullmatch(r"[0-9a-f]{64}", info.sha256)
        assert 100_000_000 < info.size < 1_000_000_000
    for name, info in ck.SAM2_0_CHECKPOINTS.items():
        assert info.filename == f"sam2_hiera_{name}.pt"
        assert info.repo_id == "facebook/sam2-hiera-" + name.replace("_", "-")
        assert re.fullmatch(r"[0-9a-f]{64}", info.sha256)
    edgetam = ck.OFFICIAL_CHECKPOINTS["edgetam"]
    assert (edgetam.repo_id, edgetam.filename, edgetam.size) == ("facebook/EdgeTAM", "edgetam.pt", 56116523)
    assert len(ck.KNOWN_CHECKPOINT_FILES) == 9 and len(ck.HUB_CHECKPOINTS) == 9
    assert len({i.sha256 for i in ck.KNOWN_CHECKPOINT_FILES.values()}) == 9
    assert ck.official_checkpoint("b+").filename == "sam2.1_hiera_base_plus.pt"
    assert ck.official_checkpoint("t", "2.0").filename == "sam2_hiera_tiny.pt"
    assert ck.official_checkpoint("edgetam").repo_id == "facebook/EdgeTAM"
    with pytest.raises(ValueError, match="tiny, small, base_plus, large"):
        ck.official_checkpoint("huge")
    with pytest.raises(ValueError, match="version"):
        ck.official_checkpoint("tiny", "3")
    with pytest.raises(ValueError, match="no official SAM 2.0 checkpoint of 'edgetam'"):
        ck.official_checkpoint("edgetam", "2.0")


def test_sizes_agree_with_parameter_counts():
    """4 bytes per float32 parameter plus a small pickle overhead: a sanity check of the table."""
    sd = official_sd("tiny", "2.1")
    params = sum(t.numel() for t in sd.values())
    size = ck.OFFICIAL_CHECKPOINTS["tiny"].size
    assert 4 * params < size < 4 * params * 1.01


# --------------------------------------------------------------------------------------------
# where a checkpoint is: a path, a folder or a Hub id
# --------------------------------------------------------------------------------------------


def test_hub_ids_and_paths_are_told_apart():
    for text in ("facebook/sam2.1-hiera-tiny", "facebook/EdgeTAM", "me/sam2_finetuned.v2", " a/b "):
        assert is_hub_id(text), text
    for text in ("sam2.1_hiera_tiny.pt", "checkpoints/sam2.1_hiera_tiny.pt", "/abs/path", "a/b/c", "a/../b",
                 "me/model.safetensors", "-x/y", "a--b/c", "a/b.", ""):
        assert not is_hub_id(text), text


def test_resolve_existing_path(tmp_path, monkeypatch):
    f = tmp_path / "mine.pt"
    f.write_bytes(b"x")
    assert ck.resolve_checkpoint(f, "tiny") == f
    assert ck.resolve_checkpoint(str(f), "tiny") == f
    monkeypatch.setenv("MYDIR", str(tmp_path))
    assert ck.resolve_checkpoint("$MYDIR/mine.pt", "tiny") == f


def test_resolve_missing_path(tmp_path):
    missing = tmp_path / "sam2.1_hiera_tiny.pt"
    with pytest.raises(CheckpointNotFoundError) as info:
        ck.resolve_checkpoint(missing, "tiny")
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert str(missing) in message and "not found" in message
    assert "on the Hugging Face Hub as facebook/sam2.1-hiera-tiny" in message
    with pytest.raises(CheckpointNotFoundError, match="a checkpoint is a file, a folder or a Hub model id"):
        ck.resolve_checkpoint("./facebook/sam2.1-hiera-tiny", "tiny")  # a relative path, not an id


def test_official_file_names_declare_their_model(tmp_path):
    (tmp_path / "sam2.1_hiera_small.pt").write_bytes(b"x")
    located = ck.locate_checkpoint(tmp_path / "sam2.1_hiera_small.pt", "tiny")
    assert (located.model, located.version) == ("small", "2.1")
    (tmp_path / "mine.pt").write_bytes(b"x")
    assert ck.locate_checkpoint(tmp_path / "mine.pt", "tiny").model is None  # the model asked for applies


def test_folders(tmp_path):
    # `hf download facebook/sam2.1-hiera-large --local-dir D`: Meta's file (and README, config) in a folder
    meta = tmp_path / "meta"
    meta.mkdir()
    for name in ("sam2.1_hiera_large.pt", "README.md", ".gitattributes"):
        (meta / name).write_bytes(b"x")
    located = ck.locate_checkpoint(meta, "tiny")
    assert located.weights == meta / "sam2.1_hiera_large.pt" and located.model == "large"
    (meta / "sam2.1_hiera_tiny.pt").write_bytes(b"x")  # several: the model asked for picks
    assert ck.resolve_checkpoint(meta, "tiny") == meta / "sam2.1_hiera_tiny.pt"
    with pytest.raises(CheckpointNotFoundError, match=r"holds no checkpoint sam2_ros can pick.*sam2.1_hiera_large.pt"):
        ck.resolve_checkpoint(meta, "small")
    # a transformers model: config.json + model.safetensors
    hf = tmp_path / "hf"
    hf.mkdir()
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        (hf / name).write_bytes(b"{}")
    located = ck.locate_checkpoint(hf, "tiny")
    assert (located.weights, located.config) == (hf / "model.safetensors", hf / "config.json")
    assert ck.locate_checkpoint(hf / "model.safetensors", "tiny").config == hf / "config.json"
    # one checkpoint file of any name
    one = tmp_path / "one"
    one.mkdir()
    (one / "finetuned.pt").write_bytes(b"x")
    (one / "notes.txt").write_bytes(b"x")
    assert ck.resolve_checkpoint(one, "tiny") == one / "finetuned.pt"
    (one / "other.pth").write_bytes(b"x")
    with pytest.raises(CheckpointNotFoundError, match=r"it holds finetuned.pt, notes.txt, other.pth"):
        ck.resolve_checkpoint(one, "tiny")


# --------------------------------------------------------------------------------------------
# load_checkpoint_file
# --------------------------------------------------------------------------------------------


def small_sd() -> Dict[str, torch.Tensor]:
    return {"a.weight": torch.arange(2000.0).reshape(40, 50), "a.bias": torch.ones(40)}


def test_load_meta_format_and_bare(tmp_path):
    sd = small_sd()
    torch.save({"model": sd, "epoch": 3}, tmp_path / "meta.pt")
    torch.save(sd, tmp_path / "bare.pt")
    torch.save(sd, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    for name in ("meta.pt", "bare.pt", "legacy.pt"):
        loaded = ck.load_checkpoint_file(tmp_path / name)
        assert loaded.keys() == sd.keys()
        assert all(torch.equal(loaded[k], sd[k]) for k in sd)
        assert all(t.device.type == "cpu" for t in loaded.values())


def test_load_safetensors_whatever_the_name(tmp_path):
    from safetensors.torch import save_file

    sd = small_sd()
    save_file(sd, str(tmp_path / "model.safetensors"))
    (tmp_path / "renamed.pt").write_bytes((tmp_path / "model.safetensors").read_bytes())
    for name in ("model.safetensors", "renamed.pt"):  # found by content, not by name
        loaded = ck.load_checkpoint_file(tmp_path / name)
        assert loaded.keys() == sd.keys() and all(torch.equal(loaded[k], sd[k]) for k in sd)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "half.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"safetensors file that cannot be read.*truncated or corrupt"):
        ck.load_checkpoint_file(tmp_path / "half.safetensors")


def test_load_missing_file(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="not found"):
        ck.load_checkpoint_file(tmp_path / "nope.pt")


def test_load_empty_file(tmp_path):
    (tmp_path / "e.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty \(0 bytes\).*download it again"):
        ck.load_checkpoint_file(tmp_path / "e.pt")


@pytest.mark.parametrize("legacy", [False, True])
def test_load_truncated_file(tmp_path, legacy):
    torch.save({"model": small_sd()}, tmp_path / "ok.pt", _use_new_zipfile_serialization=not legacy)
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated.*download it again"):
        ck.load_checkpoint_file(tmp_path / "half.pt")


def test_load_truncated_official_name_says_expected_size(tmp_path):
    torch.save({"model": small_sd()}, tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "sam2.1_hiera_tiny.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"official sam2.1_hiera_tiny.pt has 156008466 bytes"):
        ck.load_checkpoint_file(tmp_path / "sam2.1_hiera_tiny.pt")


@pytest.mark.parametrize(
    "content, pattern",
    [
        (bytes(range(1, 128)) * 32, "not a PyTorch checkpoint"),
        (b"\x80\x02" + b"garbage" * 100, "corrupt"),
        (b"PK\x03\x04" + b"\x00garbage" * 100, "(corrupt|truncated)"),
        (b"<!DOCTYPE html><html><body>Access denied</body></html>", "error or login page"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 1\n", "git lfs pull"),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00" + b'{"a":{"dtype":"F32"}}', "safetensors"),
    ],
    ids=["random", "bad-pickle", "bad-zip", "html", "lfs-pointer", "safetensors"],
)
def test_load_corrupt_or_foreign_files(tmp_path, content, pattern):
    (tmp_path / "x.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match=pattern):
        ck.load_checkpoint_file(tmp_path / "x.pt")


def test_load_not_a_dict(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list, not a state dict"):
        ck.load_checkpoint_file(tmp_path / "list.pt")
    torch.save(torch.zeros(2), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match="holds a Tensor"):
        ck.load_checkpoint_file(tmp_path / "tensor.pt")


def test_load_dict_without_tensors(tmp_path):
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "d.pt")
    with pytest.raises(CheckpointError, match=r"dict without tensors.*'epoch'"):
        ck.load_checkpoint_file(tmp_path / "d.pt")
    torch.save({"model": {}}, tmp_path / "e.pt")
    with pytest.raises(CheckpointError, match="empty dict"):
        ck.load_checkpoint_file(tmp_path / "e.pt")
    torch.save({"w": torch.zeros(1), "step": 7}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"mixes tensors with 1 other.*'step' \(int\)"):
        ck.load_checkpoint_file(tmp_path / "m.pt")


class _RunsCode:
    """Unpickling this calls os.system (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _CustomClass:
    pass


def test_load_refuses_code_execution(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": {"w": torch.zeros(1), "x": _RunsCode(marker)}}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"refusing to load.*system.*weights_only=True"):
        ck.load_checkpoint_file(tmp_path / "evil.pt")
    assert not marker.exists()

    # a raw pickle (torch's legacy format starts as a pickle stream) is refused the same way
    (tmp_path / "evil_legacy.pt").write_bytes(pickle.dumps(_RunsCode(marker), protocol=2))
    with pytest.raises(CheckpointError, match="refusing to load"):
        ck.load_checkpoint_file(tmp_path / "evil_legacy.pt")
    assert not marker.exists()  # os.system never ran


def test_load_refuses_custom_classes(tmp_path):
    torch.save({"model": {"w": torch.zeros(1)}, "cfg": _CustomClass()}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=r"refusing to load.*_CustomClass"):
        ck.load_checkpoint_file(tmp_path / "c.pt")


# --------------------------------------------------------------------------------------------
# variants and strict loading, on Meta's own models
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["tiny", "small"])
@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_detect_official_variants(size, version):
    assert ck.detect_checkpoint_variant(official_sd(size, version)) == (size, version)


def test_detect_from_shapes_and_synthetic_layouts():
    shapes = {k: tuple(v.shape) for k, v in official_sd("small", "2.1").items()}
    assert ck.detect_checkpoint_variant(shapes) == ("small", "2.1")
    for size, blocks, dim in [("base_plus", 24, 112), ("large", 48, 144)]:
        sd = {f"image_encoder.trunk.blocks.{i}.norm1.weight": (dim,) for i in range(blocks)}
        sd["image_encoder.trunk.patch_embed.proj.weight"] = (dim, 3, 7, 7)
        sd["maskmem_tpos_enc"] = (7, 1, 1, 64)
        assert ck.detect_checkpoint_variant(sd) == (size, "2.0")
    assert ck.detect_checkpoint_variant(sam1_state_dict()) == ("vit_b", "1")
    assert ck.detect_checkpoint_variant({"foo": torch.zeros(1)}) == (None, None)


def test_state_dict_does_not_depend_on_image_size():
    small = {k: tuple(v.shape) for k, v in official_sd("tiny", "2.1").items()}
    large = {k: tuple(v.shape) for k, v in build_official("tiny", "2.1", 1024).state_dict().items()}
    assert small == large


def test_sam21_adds_exactly_three_keys():
    sd20, sd21 = official_sd("tiny", "2.0"), official_sd("tiny", "2.1")
    assert set(sd21) - set(sd20) == {"no_obj_embed_spatial", "obj_ptr_tpos_proj.weight",
                                     "obj_ptr_tpos_proj.bias"}
    assert set(sd20) <= set(sd21)


def test_strict_load_roundtrip_through_a_file(tmp_path):
    source = official_sd("tiny", "2.1")
    torch.save({"model": source}, tmp_path / "ckpt.pt")  # Meta's file layout
    target = build_official("tiny", "2.1")
    ck.load_state_dict_strict(target, ck.load_checkpoint_file(tmp_path / "ckpt.pt"), model_name="tiny")
    loaded = target.state_dict()
    assert all(torch.equal(loaded[k], source[k]) for k in source)


def test_strict_load_sam20_with_meta_wrapper():
    source = official_sd("small", "2.0")
    target = build_official("small", "2.0")
    ck.load_state_dict_strict(target, {"model": source}, model_name="s")
    loaded = target.state_dict()
    assert all(torch.equal(loaded[k], source[k]) for k in source)


def _mismatch(module: torch.nn.Module, sd, model_name: str) -> CheckpointMismatchError:
    # every in-place write (load_state_dict's copy_) bumps a tensor's version counter
    before = {k: v._version for k, v in module.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as info:
        ck.load_state_dict_strict(module, sd, model_name=model_name)
    after = {k: v._version for k, v in module.state_dict().items()}
    assert before == after, "nothing may be loaded on error"
    return info.value


def test_wrong_model_size():
    error = _mismatch(_build_official_cached("tiny", "2.1"), official_sd("small", "2.1"), "tiny")
    message = str(error)
    assert "checkpoint is hiera 'small' but model='tiny' was requested" in message
    assert "pass model:=small or the tiny checkpoint (sam2.1_hiera_tiny.pt)" in message
    assert "unexpected key(s)" in message and "image_encoder.trunk.blocks.12." in message
    # small has 4 more blocks (12..15), and the stage-4 blocks of tiny are stage-3 blocks in small
    assert error.unexpected and all(k.startswith("image_encoder.trunk.blocks.1") for k in error.unexpected)
    assert error.mismatched


def test_wrong_model_size_other_direction():
    message = str(_mismatch(_build_official_cached("small", "2.0"), official_sd("tiny", "2.0"), "small"))
    assert "checkpoint is hiera 'tiny' but model='small' was requested: pass model:=tiny" in message
    assert "sam2_hiera_small.pt" in message
    assert "missing key(s)" in message


def test_sam20_checkpoint_into_sam21_model():
    error = _mismatch(_build_official_cached("tiny", "2.1"), official_sd("tiny", "2.0"), "tiny")
    message = str(error)
    assert "checkpoint is SAM 2.0 but the model is built for SAM 2.1" in message
    assert "version='2.0'" in message and "sam2.1_hiera_tiny.pt" in message
    assert sorted(error.missing) == ["no_obj_embed_spatial", "obj_ptr_tpos_proj.bias",
                                     "obj_ptr_tpos_proj.weight"]
    assert not error.unexpected and not error.mismatched
    assert "checkpoint is hiera" not in message  # same size: no size advice


def test_sam21_checkpoint_into_sam20_model():
    error = _mismatch(_build_official_cached("small", "2.0"), official_sd("small", "2.1"), "small")
    assert "checkpoint is SAM 2.1 but the model is built for SAM 2.0" in str(error)
    assert len(error.unexpected) == 3


def test_sam1_checkpoint():
    message = str(_mismatch(_build_official_cached("tiny", "2.1"), sam1_state_dict(), "tiny"))
    assert ("this is a SAM (v1) checkpoint (vit_b); sam2_ros needs a SAM 2 / 2.1 checkpoint "
            "such as sam2.1_hiera_tiny.pt") in message


def test_module_prefix_and_foreign_checkpoints():
    model = _build_official_cached("tiny", "2.1")
    prefixed = {"module." + k: v for k, v in official_sd("tiny", "2.1").items()}
    assert "starts with 'module.'" in str(_mismatch(model, prefixed, "tiny"))
    hf = {"vision_encoder.backbone.patch_embed.projection.weight": torch.zeros(1)}
    assert "Hugging Face transformers" in str(_mismatch(model, hf, "tiny"))
    assert "not a SAM 2 checkpoint" in str(_mismatch(model, {"fc.weight": torch.zeros(1)}, "tiny"))


def test_generic_mismatch_lists_keys():
    model = _build_official_cached("tiny", "2.1")
    sd = dict(official_sd("tiny", "2.1"))
    del sd["sam_mask_decoder.iou_token.weight"]
    sd["extra.weight"] = torch.zeros(2)
    sd["no_mem_embed"] = torch.zeros(1, 1, 128)
    error = _mismatch(model, sd, "tiny")
    message = str(error)
    assert "1 missing key(s) (in the model, not the checkpoint): sam_mask_decoder.iou_token.weight" in message
    assert "1 unexpected key(s) (in the checkpoint, not the model): extra.weight" in message
    assert "no_mem_embed model [1, 1, 256] vs checkpoint [1, 1, 128]" in message
    assert "Loading is strict" in message
    assert error.missing == ["sam_mask_decoder.iou_token.weight"]
    assert error.unexpected == ["extra.weight"]
    assert error.mismatched == [("no_mem_embed", (1, 1, 256), (1, 1, 128))]


def test_many_keys_are_summarised():
    model = _build_official_cached("tiny", "2.1")
    sd = {k: v for k, v in official_sd("tiny", "2.1").items() if not k.startswith("memory_attention.")}
    error = _mismatch(model, sd, "tiny")
    assert len(error.missing) > 20
    assert f"({len(error.missing) - 5} more)" in str(error)
