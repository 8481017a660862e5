#!/usr/bin/env bash
# Installs what Forkbox needs on a Debian machine and builds it. Idempotent; run as root.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ $(id -u) -ne 0 ]]; then
  echo "setup: run as root (sudo $0): Forkbox needs namespaces, cgroups and mounts" >&2
  exit 1
fi

# Runtime: the default template's Python and coreutils, libseccomp for the filter, unshare for
# user namespaces, ps for the tests, curl for the demo, the scientific stack for the
# python-datasci template (matplotlib too: a cell's figures come back as image/png), bubblewrap as
# the benchmark's point of comparison, debootstrap for `forkbox template build --from debootstrap`, btrfs-progs and xfsprogs for --storage-image (and the
# storage tests), python3-venv for the Python SDK's install test (Debian's python3 cannot make a
# venv with pip without it), redis-server for the cluster tests (they start their own on a loopback
# port; `forkbox edge` needs a Redis only when several hosts are clustered), python3-dill for
# hibernate (functions and classes defined in the REPL), nftables for "network": "egress" (hostd
# loads its libnftables for the per-sandbox firewall; `nft list table inet forkbox_…` shows it) and
# iproute2 for the veth links and their tc shaping, python3-pip for `pip install` inside sandboxes
# (the default template's /usr is the host's), python3-matplotlib for python-datasci's figures.
# Build: the .NET 10 SDK.
packages=(python3 python3-pip libseccomp2 util-linux procps coreutils curl python3-numpy python3-pandas python3-scipy python3-matplotlib bubblewrap debootstrap btrfs-progs xfsprogs python3-venv redis-server python3-dill nftables iproute2)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v dotnet >/dev/null || ! dotnet --list-sdks | grep -q '^10\.'; then
  echo "setup: the .NET 10 SDK is required (https://learn.microsoft.com/dotnet/core/install/linux-debian)" >&2
  exit 1
fi

cd "$root"
dotnet restore Forkbox.slnx -v quiet
dotnet build Forkbox.slnx -nologo -v quiet -clp:ErrorsOnly
echo "setup: ready"
