"""Network-admin attempts from inside a sandbox (ForkNetworkTests): each answers "ok" when the
kernel let it through, or the errno's name. Standard library only: the template may have no `ip`.
Also run by host root inside a sandbox's network namespace (nsenter -n), to send what a sandbox
could only send with those rights."""

import errno
import os
import socket
import struct
import sys

NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 20, 24
NLMSG_ERROR = 2
IFF_UP = 0x1
IP_TRANSPARENT, IP_FREEBIND = 19, 15


def _name(err):
    return errno.errorcode.get(err, str(err))


def _attr(kind, data):
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * ((4 - length % 4) % 4)


def _netlink(msgtype, flags, body):
    """One rtnetlink request; the kernel's answer as "ok" or an errno name."""
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    except OSError as e:
        return _name(e.errno)
    with s:
        s.bind((0, 0))
        s.send(struct.pack("=LHHLL", 16 + len(body), msgtype, flags | NLM_F_REQUEST | NLM_F_ACK, 1, 0) + body)
        answer = s.recv(65536)
        if struct.unpack_from("=H", answer, 4)[0] != NLMSG_ERROR:
            return "unexpected answer"
        err = -struct.unpack_from("=i", answer, 16)[0]
        return "ok" if err == 0 else _name(err)


def add_address(address, dev="eth0"):
    """ip addr add ADDRESS/32 dev eth0"""
    ip = socket.inet_aton(address)
    body = struct.pack("=BBBBI", socket.AF_INET, 32, 0, 0, socket.if_nametoindex(dev)) + _attr(2, ip) + _attr(1, ip)
    return _netlink(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body)


def add_route(destination, dev="eth0"):
    """ip route add DESTINATION/32 dev eth0"""
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, 32, 0, 0, 254, 3, 253, 1, 0) \
        + _attr(1, socket.inet_aton(destination)) + _attr(4, struct.pack("=I", socket.if_nametoindex(dev)))
    return _netlink(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body)


def _mtu(dev):
    import fcntl
    SIOCGIFMTU = 0x8921
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return struct.unpack("16si20x", fcntl.ioctl(s, SIOCGIFMTU, struct.pack("16si20x", dev.encode(), 0)))[1]


def set_link(dev="eth0"):
    """ip link set eth0 up mtu (its own MTU): changes nothing, and still needs the right to."""
    body = struct.pack("=BBHiII", socket.AF_UNSPEC, 0, 0, socket.if_nametoindex(dev), IFF_UP, IFF_UP) \
        + _attr(4, struct.pack("=I", _mtu(dev)))
    return _netlink(RTM_NEWLINK, 0, body)


def _open(family, kind, proto):
    try:
        socket.socket(family, kind, proto).close()
        return "ok"
    except OSError as e:
        return _name(e.errno)


def transparent_socket():
    """IP_TRANSPARENT: send from any address without owning it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
            return "ok"
        except OSError as e:
            return _name(e.errno)


def lo_up_in_a_new_namespace():
    """unshare(CLONE_NEWNET) in a child, then bring its lo up: a namespace of the sandbox's own
    making belongs to the same user namespace as a fork's."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            _unshare_newnet()
            os.write(w, set_link("lo").encode())
        except OSError as e:
            os.write(w, _name(e.errno).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        result = f.read()
    os.waitpid(pid, 0)
    return result


def _unshare_newnet():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def capabilities():
    """CAP_NET_ADMIN (12) and CAP_NET_RAW (13) in each of this process's sets."""
    sets = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")):
                key, value = line.split(":")
                caps = int(value, 16)
                sets[key] = [name for bit, name in ((12, "net_admin"), (13, "net_raw")) if caps >> bit & 1]
    return sets


def operations(another_address):
    return {
        "add another sandbox's address": add_address(another_address),
        "add a route": add_route("192.0.2.1"),
        "set eth0 up and its mtu": set_link(),
        "raw ip socket": _open(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW),
        "packet socket (arp)": _open(socket.AF_PACKET, socket.SOCK_RAW, 0x0806),
        "ip_transparent": transparent_socket(),
        "lo up in a namespace of its own": lo_up_in_a_new_namespace(),
    }


def send_udp(source, destination, port, token, transparent=False):
    """A datagram to destination:port from `source` (an address this end may not have)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.setsockopt(socket.SOL_IP, IP_TRANSPARENT if transparent else IP_FREEBIND, 1)
            s.bind((source, 0))
            s.sendto(token.encode(), (destination, port))
            return "sent"
        except OSError as e:
            return _name(e.errno)


if __name__ == "__main__":
    # python3 net_admin_probe.py SOURCE DESTINATION PORT TOKEN: a transparent send, as host root.
    print(send_udp(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], transparent=True))
