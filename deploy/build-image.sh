#!/usr/bin/env bash
# Publishes forkbox self-contained for linux-x64 into deploy/out and builds the image.
# Usage: deploy/build-image.sh TAG   (then push TAG where your cluster pulls from, and set it in kubernetes/*.yaml)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tag="${1:?usage: $0 IMAGE_TAG}"
rm -rf "$here/out"
dotnet publish "$here/../src/Forkbox.Cli" -c Release -r linux-x64 --self-contained -o "$here/out" -nologo -v quiet
docker build -t "$tag" "$here"
