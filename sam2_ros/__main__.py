"""`python -m sam2_ros` starts the tracker node (same as `ros2 run sam2_ros tracker_node`)."""
import sys

from sam2_ros.ros.node import main

if __name__ == '__main__':
    sys.exit(main())
