#!/usr/bin/env python3
"""A PoE switch for simulated boards: an snmpd pass_persist extension.

snmpd hands it the PoE MIB's pethPsePortAdminEnable subtree
(1.3.6.1.2.1.105.1.1.1.3.GROUP.PORT). Each port is a QEMU VM, named in
$ALPY_POE_DIR/ports.json ({"1.1": "/path/to/qmp.sock"}): writing 2 (false)
stops the VM, writing 1 (true) resets and runs it, and a read asks QEMU
whether it runs. Every request is logged, with its start and end, to
$ALPY_POE_DIR/agent.log.
"""
import json
import os
import socket
import sys
import time

BASE = ".1.3.6.1.2.1.105.1.1.1.3"
DIR = os.environ["ALPY_POE_DIR"]
with open(os.path.join(DIR, "ports.json")) as f:
    PORTS = json.load(f)
LOG = open(os.path.join(DIR, "agent.log"), "a", buffering=1)


def log(*words):
    LOG.write("%.3f %s\n" % (time.time(), " ".join(str(w) for w in words)))


def qmp(path, *commands):
    """Runs QMP commands on the VM; returns the last answer."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    f = s.makefile("rw")
    f.readline()  # the greeting
    answer = None
    for cmd in ("qmp_capabilities",) + commands:
        f.write(json.dumps({"execute": cmd}) + "\n")
        f.flush()
        while True:
            msg = json.loads(f.readline())
            if "return" in msg or "error" in msg:
                answer = msg
                break
    s.close()
    return answer


def state(port):
    status = qmp(PORTS[port], "query-status")["return"]["status"]
    return 1 if status == "running" else 2


def key(port):
    return tuple(int(x) for x in port.split("."))


def reply(*lines):
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()


while True:
    cmd = sys.stdin.readline()
    if not cmd:
        break
    cmd = cmd.strip()
    if not cmd:
        continue  # snmpd ends a set with an empty line: it wants no answer
    if cmd == "PING":
        reply("PONG")
    elif cmd == "get":
        oid = sys.stdin.readline().strip()
        port = oid[len(BASE) + 1:] if oid.startswith(BASE + ".") else None
        if port in PORTS:
            log("get", port)
            reply(oid, "integer", str(state(port)))
        else:
            reply("NONE")
    elif cmd == "getnext":
        oid = sys.stdin.readline().strip()
        after = oid[len(BASE) + 1:] if oid.startswith(BASE + ".") else ""
        after_key = tuple(int(x) for x in after.split(".") if x.isdigit())
        nexts = sorted((p for p in PORTS if key(p) > after_key), key=key)
        if nexts and (oid == BASE or oid.startswith(BASE)):
            reply(BASE + "." + nexts[0], "integer", str(state(nexts[0])))
        elif not oid.startswith(BASE) and oid < BASE and PORTS:
            first = sorted(PORTS, key=key)[0]
            reply(BASE + "." + first, "integer", str(state(first)))
        else:
            reply("NONE")
    elif cmd == "set":
        oid = sys.stdin.readline().strip()
        typed = sys.stdin.readline().split()
        port = oid[len(BASE) + 1:] if oid.startswith(BASE + ".") else None
        if port not in PORTS:
            reply("not-writable")
        elif len(typed) != 2 or typed[0] != "integer" or typed[1] not in ("1", "2"):
            reply("wrong-type")
        else:
            log("begin set", port, typed[1])
            if typed[1] == "2":
                qmp(PORTS[port], "stop")
            else:
                qmp(PORTS[port], "system_reset", "cont")
            time.sleep(0.2)  # as a real PoE controller takes a moment
            log("end set", port, typed[1])
            reply("DONE")
    else:
        reply("NONE")
