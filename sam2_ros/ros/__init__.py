"""ROS 2 glue (rclpy): the tracker node, message conversions, parameters, prompts, diagnostics.

Only this subpackage imports rclpy; the model and the tracker never do.
"""
