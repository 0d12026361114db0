from pathlib import Path

from setuptools import find_packages, setup

requirements = [
    line.split("#")[0].strip()
    for line in Path(__file__).with_name("requirements.txt").read_text().splitlines()
    if line.split("#")[0].strip()
]

setup(
    name="uer",
    version="0.1.0",
    description="Assemble-on-demand pre-training toolkit (UER) with FastBERT",
    packages=find_packages(include=["uer", "uer.*"]),
    python_requires=">=3.10",
    install_requires=requirements,
    entry_points={"console_scripts": ["uer=uer.__main__:main"]},
    # uer.serve.ray_deployment: the serve app as a Ray Serve deployment (ray pulls no torch)
    extras_require={"ray": ["ray[serve]>=2.9"]},
)
