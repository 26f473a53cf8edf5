"""ament_python build script for sam2_ros (also works with plain pip)."""
from glob import glob

from setuptools import find_packages, setup

package_name = 'sam2_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml')),
        # the demo's sample clip and prompts (sam2_ros.tools.demo.bundled_sample finds them)
        ('share/' + package_name + '/data/sample', glob('data/sample/*')),
    ],
    # Runtime dependencies come from package.xml (rosdep) on a ROS machine and from
    # requirements.txt (scripts/setup.sh) elsewhere; none are declared here so that
    # `pip install` never replaces a distro's or a CUDA build's torch.
    install_requires=['setuptools'],
    # Optional: text prompts through Grounding DINO (sam2_ros.model.text_detector); pinned in
    # requirements-text.txt. transformers does not pull torch.
    extras_require={'text': ['transformers>=5.23,<6', 'pillow']},
    zip_safe=True,
    maintainer='sam2_ros maintainers',
    maintainer_email='maintainers@sam2-ros.invalid',
    description='Real-time object tracking in ROS 2 camera streams with SAM 2, in plain PyTorch.',
    license='Apache-2.0',
    python_requires='>=3.10',
    entry_points={
        'console_scripts': [
            'tracker_node = sam2_ros.ros.entry:main',
            'sam2_evaluate = sam2_ros.tools.evaluate:main',
            'sam2_live = sam2_ros.tools.live:main',
            'sam2_video_to_bag = sam2_ros.tools.video_to_bag:main',
            'sam2_demo = sam2_ros.tools.demo:main',
        ],
    },
)
