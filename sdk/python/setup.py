# Forkbox's Python SDK. Standard library only, so installing it needs nothing from an index.
#
# Why setup.py and no pyproject.toml: a pyproject.toml with a [build-system] table makes pip build in
# an isolated environment, for which it downloads setuptools from PyPI, so `pip install ./sdk/python`
# fails on a machine without network access. Given only a setup.py, pip up to 23.0 (Debian 12's is
# 23.0.1) installs with the setuptools already installed, offline. pip 23.1+ always builds in an
# isolated environment: offline, it needs --no-build-isolation (see the README's Python SDK section).
from setuptools import setup

setup(
    name="forkbox",
    version="0.1.0",
    description="Python SDK for Forkbox, a self-hosted sandbox platform for AI agents",
    packages=["forkbox"],
    package_data={"forkbox": ["py.typed"]},
    python_requires=">=3.9",
    license="Proprietary",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Typing :: Typed",
    ],
)
