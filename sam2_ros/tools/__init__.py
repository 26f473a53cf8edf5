"""Command-line tools: the quick-start demo, rosbag evaluation, video-to-bag, benchmarks."""
