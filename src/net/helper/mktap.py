# Run by alpy's namespace helper inside a node's network namespace
# (nsenter -n): creates tap NAME there and sends its fd, tagged, to the
# alpy process listening on SOCKET. Usage: mktap.py SOCKET NAME TAG
import fcntl
import os
import socket
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000

sock_path, name, tag = sys.argv[1], sys.argv[2], sys.argv[3]
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sh22x", name.encode(), IFF_TAP | IFF_NO_PI))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sock_path)
socket.send_fds(s, [tag.encode()], [fd])
s.close()
