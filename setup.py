"""rlgen: reinforcement learning with generative components."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="rlgen",
    version="0.1.0",
    description="VIME, GAIL and the 2016 image generative models on stable-baselines3 and PyTorch",
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["rlgen", "rlgen.*"]),
    package_data={"rlgen.configs": ["*.yaml"], "rlgen.envs": ["assets/*.xml"]},
    install_requires=[
        # torch: install the build for your machine first (README); any torch>=2.1 works.
        "torch>=2.1",
        "numpy>=1.24",
        "gymnasium[mujoco]>=1.0",
        "stable-baselines3>=2.4",
        "sb3-contrib>=2.4",
        "tensorboard>=2.12",
        "tqdm>=4.60",
        "pyyaml>=6.0",
        "matplotlib>=3.7",
    ],
    extras_require={
        # Ray too, so that the tested install runs the Ray backend's loopback-cluster test (tests/test_bench.py)
        "dev": ["pytest>=8", "pytest-timeout>=2.2", "ruff>=0.4", "ray[default]>=2.9"],
        "ray": ["ray[default]>=2.9"],
    },
    entry_points={"console_scripts": ["rlgen=rlgen.cli:main"]},
)
