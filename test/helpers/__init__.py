"""Test helpers shared by several test files (and by benchmarks/): Meta's package as an oracle
(``oracle``), parity scenarios (``parity``), ONNX exports and engine files (``export``), the node
over DDS (``ros``), the endurance runs' clip and prompts (``clips``), synthetic RGB-D scenes
(``rgbd_scene``), vision_msgs classes generated for the tests (``vision_msgs_gen``) and SAMURAI's
released predictor as an oracle, run in its own venv (``samurai``). Test
files import them as ``from helpers.x import ...`` (pytest.ini puts test/ on the path)."""
