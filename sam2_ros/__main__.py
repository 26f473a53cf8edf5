"""`python -m sam2_ros` starts the tracker node (same as `ros2 run sam2_ros tracker_node`);
`python -m sam2_ros --cameras front left --ros-args ...` one node per camera in one process,
sharing one model (sam2_ros.ros.multi); `python -m sam2_ros --help` prints its usage and exits."""
import sys

if __name__ == '__main__':
    from sam2_ros.ros.usage import print_usage, wants_help

    if wants_help(sys.argv[1:]):  # before rclpy: help must not start a node or a download
        print_usage()
        sys.exit(0)
    from sam2_ros.ros.entry import main

    sys.exit(main())
