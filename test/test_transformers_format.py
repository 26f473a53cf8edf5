"""SAM 2 checkpoints saved by Hugging Face transformers load into sam2_ros, with the same numbers.

The parity test builds transformers' own ``Sam2VideoModel`` (a test dependency, never a runtime
one) from a small config (hiera tiny at 128 px) with random weights, every parameter perturbed,
saves it with ``save_pretrained`` and loads the folder with ``Tracker.from_pretrained``. Both
then track the same frames: our preprocessing's tensor is fed to both (transformers' own
processor would round the resized frame to uint8), and the prompts go to transformers' session
in model coordinates, as its processor would put them there.
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sam2_ros import ImagePredictor, Prompt, Tracker
from sam2_ros.model.build import build_model, build_random_model
from sam2_ros.model.checkpoint import CheckpointError, CheckpointMismatchError, load_checkpoint
from sam2_ros.model.preprocess import frame_to_model_coords, to_frame_resolution, to_model_input
from sam2_ros.model.transformers_format import _PE, _PE_COPIES, _POINT_EMBED, read_config, to_ours, transformers_names

SIZE = 128
FRAMES = 10


def transformers_state(state):
    """A state dict in transformers' names and layout (as Sam2VideoModel.save_pretrained writes),
    made from one in Meta's names (used where transformers itself is not needed)."""
    names = transformers_names(list(state), list(state))
    out = {names[k]: v.contiguous() for k, v in state.items()
           if not k.startswith("sam_prompt_encoder.point_embeddings.") and k != _PE}
    out[_POINT_EMBED] = torch.cat([state[f"sam_prompt_encoder.point_embeddings.{i}.weight"] for i in range(4)])
    for copy in _PE_COPIES:
        out[copy] = state[_PE].clone()
    return out


def tiny_config(model_type="sam2_video", **top):
    """The parts of a transformers config.json that sam2_ros reads, for hiera tiny."""
    return {"model_type": model_type, **top, "vision_config": {"backbone_config": {
        "blocks_per_stage": [1, 2, 7, 2], "embed_dim_per_stage": [96, 192, 384, 768],
        "num_attention_heads_per_stage": [1, 2, 4, 8], "global_attention_blocks": [5, 7, 9],
        "window_size_per_stage": [8, 4, 14, 7], "window_positional_embedding_background_size": [7, 7]}}}


def _save(folder, state, config):
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def ours_state():
    return build_random_model("tiny", SIZE, "cpu", seed=4).state_dict()


# --------------------------------------------------------------------------------------------
# The key map and config.json, without transformers
# --------------------------------------------------------------------------------------------


def test_the_key_map_is_complete_both_ways(ours_state):
    hf = transformers_state(ours_state)
    assert len(hf) == len(ours_state) - 3 + 1  # 4 point embeddings are one matrix, the PE is stored twice
    back = to_ours(hf)
    assert back.keys() == ours_state.keys()
    assert all(torch.equal(back[k], ours_state[k]) for k in ours_state)


def test_transformers_keys_without_a_counterpart_are_named(ours_state):
    hf = transformers_state(ours_state)
    hf["mask_decoder.extra_head.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match=r"1 transformers key\(s\) have no counterpart in SAM 2: "
                                                      r"mask_decoder.extra_head.weight"):
        to_ours(hf)
    hf = transformers_state(ours_state)
    hf[_PE_COPIES[1]] = hf[_PE_COPIES[1]] + 1
    with pytest.raises(CheckpointMismatchError, match="two copies of the prompt encoder's positional matrix"):
        to_ours(hf)


def test_a_missing_key_is_named_in_both_namings(tmp_path, ours_state):
    hf = transformers_state(ours_state)
    del hf["mask_decoder.iou_prediction_head.proj_out.weight"]
    del hf["memory_encoder.memory_fuser.layers.1.scale"]
    folder = _save(tmp_path / "m", hf, tiny_config())
    with pytest.raises(CheckpointMismatchError) as info:
        build_model(str(folder), "tiny", SIZE, "cpu")
    message = str(info.value)
    assert "2 missing key(s)" in message and "sam_mask_decoder.iou_prediction_head.layers.2.weight" in message
    lacks = message.split("In transformers' names, the checkpoint lacks: ")[1]
    assert sorted(lacks.split(", ")) == ["mask_decoder.iou_prediction_head.proj_out.weight",
                                         "memory_encoder.memory_fuser.layers.1.scale"]


def test_config_json_gives_size_and_version(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(tiny_config()))
    config = read_config(path)
    assert (config.model, config.version, config.image_only) == ("tiny", "2.1", False)
    path.write_text(json.dumps(tiny_config(enable_temporal_pos_encoding_for_object_pointers=False,
                                           enable_occlusion_spatial_embedding=False)))
    assert read_config(path).version == "2.0"
    path.write_text(json.dumps(tiny_config("sam2")))
    assert read_config(path).image_only
    small = tiny_config()
    small["vision_config"]["backbone_config"].update(blocks_per_stage=[1, 2, 11, 2], global_attention_blocks=[7, 10, 13])
    path.write_text(json.dumps(small))
    assert read_config(path).model == "small"


@pytest.mark.parametrize("change, message", [
    ({"model_type": "edgetam_video"}, "model_type 'edgetam_video', not a SAM 2 model of transformers"),
    ({"blocks_per_stage": [1, 1, 1, 1]}, "none of SAM 2's released sizes"),
    ({"max_object_pointers_in_encoder": 8}, r"max_object_pointers_in_encoder 8 \(released: 16\)"),
    ({"enable_occlusion_spatial_embedding": False}, "mixes SAM 2.0 and 2.1"),
    ({"garbage": True}, "cannot read"),
])
def test_config_json_that_sam2_ros_cannot_build_is_refused(tmp_path, change, message):
    config = tiny_config()
    if "blocks_per_stage" in change:
        config["vision_config"]["backbone_config"].update(change)
    else:
        config.update(change)
    path = tmp_path / "config.json"
    path.write_text("{not json" if "garbage" in change else json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        read_config(path)


def test_without_config_json_the_keys_give_the_size(tmp_path, ours_state):
    from safetensors.torch import save_file

    save_file(transformers_state(ours_state), str(tmp_path / "weights.safetensors"))
    loaded = load_checkpoint(str(tmp_path / "weights.safetensors"), model="large")
    assert loaded.model == "tiny" and loaded.from_transformers and not loaded.image_only


# --------------------------------------------------------------------------------------------
# Against transformers itself
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def transformers():
    """transformers' SAM 2 classes. Imported with the oracle's torchvision stand-in (test/helpers/oracle.py)
    out of sys.modules: transformers probes torchvision once, at import, and the stand-in is not one."""
    shim = {k: sys.modules.pop(k) for k in [k for k in sys.modules if k.split(".")[0] == "torchvision"]}
    try:
        pytest.importorskip("transformers", reason="transformers (test dependency)")
        from transformers import Sam2Config, Sam2Model, Sam2VideoConfig, Sam2VideoModel
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession
    finally:
        sys.modules.update(shim)
    return SimpleNamespace(Sam2Config=Sam2Config, Sam2Model=Sam2Model, Sam2VideoConfig=Sam2VideoConfig,
                           Sam2VideoModel=Sam2VideoModel, Sam2VideoInferenceSession=Sam2VideoInferenceSession)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, transformers):
    """(folder, model): a random Sam2VideoModel (hiera tiny, 128 px) saved by save_pretrained."""
    config = transformers.Sam2VideoConfig(
        vision_config={"model_type": "sam2_vision_model",
                       "backbone_config": {"model_type": "sam2_hiera_det_model", "image_size": [SIZE, SIZE]},
                       "backbone_feature_sizes": [[SIZE // 4] * 2, [SIZE // 8] * 2, [SIZE // 16] * 2]},
        prompt_encoder_config={"image_size": SIZE}, image_size=SIZE,
        memory_attention_rope_feat_sizes=[SIZE // 16] * 2)
    torch.manual_seed(0)
    model = transformers.Sam2VideoModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # every parameter, so that no path hides behind zeros or ones
            p.add_(torch.randn_like(p) * 0.02)
        # a SAM 2 has one random-Fourier matrix; transformers keeps two copies of it (equal in
        # every converted or fine-tuned checkpoint, but drawn separately in a fresh model)
        model.prompt_encoder.shared_embedding.positional_embedding.copy_(
            model.shared_image_embedding.positional_embedding)
        # objects present: a random head scores about 0, i.e. "occluded" half of the time
        model.mask_decoder.pred_obj_score_head.proj_out.bias.add_(2.0)
    folder = tmp_path_factory.mktemp("sam2_video_hf")
    model.save_pretrained(folder)
    return folder, model


def _hf_prompt(session, frame_idx, obj_id, points, labels, hw):
    """A prompt as transformers' processor stores it: model coordinates; a box is two points
    labelled 2 and 3 (SAM's box corners)."""
    coords = frame_to_model_coords(torch.as_tensor(points, dtype=torch.float32), hw, SIZE)
    session.add_point_inputs(session.obj_id_to_idx(obj_id), frame_idx,
                             {"point_coords": coords[None, None], "point_labels": torch.tensor([[labels]])})


def test_tracking_equals_transformers_sam2_video(transformers, saved, bunny_frames):
    folder, hf = saved
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    frames = bunny_frames(FRAMES, 320, 180)
    h, w = frames[0].shape[:2]
    # All objects start on frame 0: an object added later is tracked the same by both, but
    # transformers then encodes the other objects' memory of that frame differently from Meta's
    # predictor (which sam2_ros follows; test_tracker_parity.py): relative differences ~2e-3.
    plan = {0: [Prompt(1, points=[[0.45 * w, 0.55 * h], [0.9 * w, 0.2 * h]], labels=[1, 0]),
                Prompt(2, box=[0.05 * w, 0.1 * h, 0.4 * w, 0.6 * h]),
                Prompt(3, points=[[0.7 * w, 0.4 * h]], labels=[1])]}

    tracker = Tracker.from_pretrained(str(folder), image_size=SIZE, device="cpu")
    assert (tracker.model.cfg.name, tracker.model.cfg.version) == ("tiny", "2.1")
    session = transformers.Sam2VideoInferenceSession(video_height=h, video_width=w, dtype=torch.float32)
    worst = 0.0
    for t, frame in enumerate(frames):
        ours = tracker.track(frame, plan.get(t, []))
        new = []
        for p in plan.get(t, []):
            if p.box is not None:
                _hf_prompt(session, t, p.obj_id, np.reshape(p.box, (2, 2)), [2, 3], (h, w))
            else:
                _hf_prompt(session, t, p.obj_id, p.points, list(p.labels), (h, w))
            new.append(p.obj_id)
        session.obj_with_new_inputs = new
        with torch.no_grad():
            theirs = hf(inference_session=session, frame=to_model_input([frame], SIZE, "cpu")[0])
        assert ours.object_ids == list(theirs.object_ids)
        logits = to_frame_resolution(theirs.pred_masks, (h, w))[:, 0]  # (N, H, W), as ours
        for i, oid in enumerate(ours.object_ids):
            scale = logits[i].abs().max().clamp_min(1e-6)
            err = ((ours.logits[i] - logits[i]).abs().max() / scale).item()
            worst = max(worst, err)
            assert err < 1e-3, f"frame {t} object {oid}: logits differ by {err:.2e} (relative)"
            score = torch.sigmoid(theirs.object_score_logits.reshape(-1)[i]).item()
            assert abs(float(ours.scores[i]) - score) < 1e-4, f"frame {t} object {oid}: score"
    assert len(ours.object_ids) == 3 and ours.masks.any(), "the random model is degenerate"
    print(f"transformers parity: {FRAMES} frames, 3 objects, worst relative logit error {worst:.2e}")


def test_an_image_only_sam2model_serves_the_image_predictor_only(transformers, saved, tmp_path):
    folder, hf = saved
    image_config = transformers.Sam2Config(vision_config=hf.config.vision_config.to_dict(),
                                           prompt_encoder_config=hf.config.prompt_encoder_config.to_dict(),
                                           mask_decoder_config=hf.config.mask_decoder_config.to_dict())
    image_model = transformers.Sam2Model(image_config)
    missing, _ = image_model.load_state_dict(hf.state_dict(), strict=False)
    assert not missing
    image_model.save_pretrained(tmp_path / "image")

    image = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    full = ImagePredictor.from_pretrained(str(folder), image_size=SIZE, device="cpu")
    only = ImagePredictor.from_pretrained(str(tmp_path / "image"), image_size=SIZE, device="cpu")
    a = full.segment(image, points=[[150, 100]], labels=[1])
    b = only.segment(image, points=[[150, 100]], labels=[1])
    assert torch.equal(a.logits, b.logits) and torch.equal(a.scores, b.scores)
    assert only.model.memory_attention.norm.weight.isnan().all()  # never used, and loud if it were
    with pytest.raises(CheckpointError, match=r"image-only SAM 2 \(transformers' Sam2Model\).*Sam2VideoModel"):
        Tracker.from_pretrained(str(tmp_path / "image"), image_size=SIZE, device="cpu")
