"""The sam2_tracker node (placeholder: the real node lands later)."""
import sys


def main(args=None) -> int:
    """Entry point of `tracker_node` and `python -m sam2_ros`."""
    print('sam2_ros: the tracker node is not implemented yet.', file=sys.stderr)
    return 1


if __name__ == '__main__':
    sys.exit(main())
