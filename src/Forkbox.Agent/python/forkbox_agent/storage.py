"""Placeholder until the storage branch lands: plain copy via cp."""
import subprocess


def snapshot(kind, src, dst):
    subprocess.run(["cp", "-a", "--reflink=auto", src, dst], check=True)
