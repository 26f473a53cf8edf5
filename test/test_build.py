"""Building a model from checkpoints: the user-facing path (Tracker / ImagePredictor.from_pretrained)."""

import pytest
import torch

from sam2_ros import ImagePredictor, Tracker
from sam2_ros.model.build import build_model, resolve_dtype
from sam2_ros.model.checkpoint import CheckpointDownloadError, CheckpointError, CheckpointMismatchError


def test_version_is_detected_from_the_keys(official_checkpoint):
    assert build_model(str(official_checkpoint("tiny", 256, version="2.0")), "tiny", 256, "cpu").cfg.version == "2.0"
    assert build_model(str(official_checkpoint("tiny", 256, version="2.1")), "tiny", 256, "cpu").cfg.version == "2.1"


def test_wrong_model_size_names_the_fix(official_checkpoint):
    with pytest.raises(CheckpointMismatchError, match="model:=small"):
        Tracker.from_pretrained(str(official_checkpoint("small", 256)), model="tiny", image_size=256, device="cpu")


def test_sam1_checkpoint_is_recognised(tmp_path):
    sd = {"image_encoder.blocks.0.attn.qkv.weight": torch.zeros(3, 3), "image_encoder.neck.0.weight": torch.zeros(1),
          "image_encoder.pos_embed": torch.zeros(1, 64, 64, 768), "mask_decoder.iou_token.weight": torch.zeros(1, 256)}
    path = tmp_path / "sam_vit_b.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointMismatchError, match="SAM \\(v1\\)"):
        build_model(str(path), "tiny", 256, "cpu")


def test_truncated_and_corrupt_files(official_checkpoint, tmp_path):
    data = official_checkpoint("tiny", 256).read_bytes()
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(CheckpointError, match="truncated"):
        ImagePredictor.from_pretrained(str(tmp_path / "half.pt"), image_size=256, device="cpu")
    with pytest.raises(CheckpointError):
        build_model(str(tmp_path / "junk.pt"), "tiny", 256, "cpu")
    with pytest.raises(CheckpointError, match="not found"):
        build_model(str(tmp_path / "missing.pt"), "tiny", 256, "cpu")


def test_no_checkpoint_fetches_the_official_one_and_offline_says_what_to_do(hub_offline):
    with pytest.raises(CheckpointDownloadError) as info:
        Tracker.from_pretrained(None, model="tiny", image_size=256, device="cpu")
    message = str(info.value)
    assert "cannot get sam2.1_hiera_tiny.pt of facebook/sam2.1-hiera-tiny" in message
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in message
    assert "hf download facebook/sam2.1-hiera-tiny sam2.1_hiera_tiny.pt" in message and "HF_ENDPOINT" in message
    with pytest.raises(CheckpointDownloadError, match="sam2.1_hiera_small.pt of facebook/sam2.1-hiera-small"):
        ImagePredictor.from_pretrained("facebook/sam2.1-hiera-small", image_size=256, device="cpu")


def test_safetensors_of_meta_layout(official_checkpoint, tmp_path):
    from safetensors.torch import save_file

    from sam2_ros.model.checkpoint import load_checkpoint_file

    state = load_checkpoint_file(official_checkpoint("tiny", 256))
    save_file(state, str(tmp_path / "tiny.safetensors"))
    model = build_model(str(tmp_path / "tiny.safetensors"), "tiny", 256, "cpu")
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_bad_settings():
    with pytest.raises(ValueError, match="unknown model"):
        build_model(None, "huge", 256, "cpu")
    with pytest.raises(ValueError, match="multiple of 32"):
        Tracker.from_config(image_size=300, device="cpu")
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int8", torch.device("cpu"))
    with pytest.raises(ValueError, match="float32"):
        resolve_dtype("float16", torch.device("cpu"))


def test_model_and_tracker_import_no_ros_no_torchvision_no_hydra():
    import subprocess
    import sys

    code = ("import sys, sam2_ros.tracking.tracker, sam2_ros.image.predictor, sam2_ros.model; "
            "bad = [m for m in ('rclpy', 'torchvision', 'hydra', 'sam2', 'transformers') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
