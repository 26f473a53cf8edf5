"""The static frame step (no rclpy): one frame of tracking for every object slot as pure tensor
functions over a fixed-capacity memory bank, so that torch.compile, CUDA graphs, ONNX and
TensorRT take it whole. :mod:`~sam2_ros.step.bank` (the bank's preallocated tensors),
:mod:`~sam2_ros.step.frame_step` (the step), :mod:`~sam2_ros.step.joint` (several cameras'
banks as one batch), :mod:`~sam2_ros.step.compiled` (the compiled graphs, shared by every
camera of a model, and :class:`~sam2_ros.step.compiled.FrameStep`, which runs them);
SAMURAI's motion-aware memory as batched tensors: :mod:`~sam2_ros.step.kalman` (a Kalman filter
per slot), :mod:`~sam2_ros.step.memory_selection` (its candidate choice, memory test and bounded
ring), :mod:`~sam2_ros.step.samurai_step` (their place in the step). Imports
only :mod:`sam2_ros.model`: the exported step (:mod:`sam2_ros.backends`) and the tracker
(:mod:`sam2_ros.tracking`) build on it.
"""
