"""Several hosts on one machine for the tests: Linux network namespaces joined by a bridge,
each running its own sshd, so that ``horovodrun -H a:1,b:1`` starts ranks over ssh and they
all-reduce over TCP between the namespaces.

``two_hosts()`` (a context manager) makes, under one fixed name prefix (``rlh``):

- a bridge ``rlh0`` in this (the root) namespace holding ``<net>.1/24``, the only address
  added here, on a private /24 that no route of this machine covers;
- namespaces ``rlh-a`` and ``rlh-b``, each with loopback and one veth end joined to the
  bridge, holding ``<net>.2`` / ``<net>.3``: a connected route to the /24 and no default
  route, so nothing leaves the /24 or loopback. The veth end inside each namespace is named
  ``rlh0`` like the bridge, because horovodrun uses one interface name for the driver and
  every host (it looks the driver's address up on the name the hosts have in common);
- a host name per namespace (its own UTS namespace: ``rlh-a``, ``rlh-b``) and a hosts file
  (``/etc/netns/NS/hosts``, which ``ip netns exec`` mounts over /etc/hosts for that namespace
  only) resolving each name to its address, as a cluster's DNS would. Gloo needs it: Horovod
  0.28.1 builds the device of its global process set from the host name, not from
  HOROVOD_GLOO_IFACE, and this machine's own name resolves to 127.0.0.1;
- an sshd per namespace (``ip netns exec NS unshare --uts ... /usr/sbin/sshd -D``) on that
  namespace's address only, with a generated host key, root by public key only (a generated ed25519 key
  whose authorized_keys lies in the run's directory), no PAM, its pid file in that directory;
- an environment for horovodrun: ``ssh`` first on PATH is a wrapper adding ``-F`` the run's
  client config (that key, known hosts in the run's directory, no host-key prompts), and HOME
  is the run's directory (horovodrun keeps its check cache under ~/.horovod).

Everything is torn down on the way out, whatever happened inside: the sshd processes (and
anything else left in the namespaces), the namespaces, the veths, the bridge, the hosts files,
the directory.
A lock (flock, released by the kernel when its holder dies) serialises runs on one machine,
and whoever takes it first removes what a crashed run left under the prefix.
"""
from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "rlh"
BRIDGE = f"{PREFIX}0"          # the bridge here, and each namespace's interface name
NAMESPACES = (f"{PREFIX}-a", f"{PREFIX}-b")
LOCK = Path(tempfile.gettempdir()) / f"{PREFIX}-hosts.lock"
NETNS_ETC = Path("/etc/netns")  # per-namespace files `ip netns exec` mounts over /etc
SSHD = "/usr/sbin/sshd"
SSH = shutil.which("ssh") or "/usr/bin/ssh"
# private /24s tried in turn; the first one no route or address of this machine overlaps
CANDIDATES = [f"10.231.{n}.0/24" for n in range(19, 256, 17)] + ["192.168.231.0/24"]


class HostsUnavailable(RuntimeError):
    """Namespaces, sshd or ssh cannot be had here (not root, tools missing)."""


def unavailable() -> str | None:
    """Why two_hosts() cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, sshd)"
    for tool in ("ip", "ssh", "ssh-keygen", "unshare"):
        if not shutil.which(tool):
            return f"`{tool}` not found (make hosts-deps installs it as root)"
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} not found: openssh-server is not installed (make hosts-deps installs it)"
    probe = f"{PREFIX}-probe"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    _ip("netns", "delete", probe, check=False)
    return None


def _run(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return _run("ip", *args, check=check)


def _in_ns(ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return _run("ip", "netns", "exec", ns, *cmd, check=check)


def namespaces() -> list[str]:
    """The namespaces of this prefix that exist now."""
    out = _ip("-j", "netns", "list", check=False).stdout.strip()
    names = [n["name"] for n in json.loads(out)] if out else []
    return [n for n in names if n.startswith(PREFIX + "-")]


def links() -> list[str]:
    """This namespace's interfaces of this prefix (the bridge, the veth ends) that exist now."""
    out = _ip("-j", "link", "show", check=False).stdout.strip()
    names = [n["ifname"] for n in json.loads(out)] if out else []
    return [n for n in names if n.startswith(PREFIX)]


def ns_pids(ns: str) -> list[int]:
    proc = _ip("netns", "pids", ns, check=False)
    return [int(p) for p in proc.stdout.split()] if proc.returncode == 0 else []


def leftovers() -> dict:
    """What of this prefix exists now: namespaces (with their processes) and interfaces."""
    return {"namespaces": {ns: ns_pids(ns) for ns in namespaces()}, "links": links(),
            "etc": sorted(p.name for p in NETNS_ETC.glob(f"{PREFIX}-*"))}


def remove_all() -> None:
    """End every process in this prefix's namespaces, delete them and the interfaces."""
    for ns in namespaces():
        pids = ns_pids(ns)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.time() + 5
            while pids and time.time() < deadline:
                pids = [p for p in pids if _alive(p)]
                time.sleep(0.05)
            if not pids:
                break
        _ip("netns", "delete", ns, check=False)
    for name in links():   # deleting one end of a veth deletes the other
        _ip("link", "delete", name, check=False)
    for path in NETNS_ETC.glob(f"{PREFIX}-*"):
        shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(OSError):
        NETNS_ETC.rmdir()   # only when empty: nothing of anyone else's


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def free_subnet() -> ipaddress.IPv4Network:
    """A private /24 that no address or route of this namespace overlaps (default aside)."""
    taken = []
    for kind in ("addr", "route"):
        out = _ip("-j", "-4", kind, "show", check=False).stdout.strip()
        for item in json.loads(out) if out else []:
            if kind == "addr":
                for a in item.get("addr_info", []):
                    taken.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}",
                                                      strict=False))
            elif item.get("dst") not in (None, "default"):
                taken.append(ipaddress.ip_network(item["dst"], strict=False))
    for cand in map(ipaddress.ip_network, CANDIDATES):
        if not any(cand.overlaps(t) for t in taken):
            return cand
    raise HostsUnavailable(f"every candidate subnet is in use here: {CANDIDATES}")


@dataclass
class Hosts:
    """What two_hosts() yields: the hosts' addresses (``-H a:1,b:1`` for horovodrun), the
    namespace of each (also its host name), the bridge's address, the environment that makes ssh reach them."""
    addresses: list[str]
    namespaces: list[str]
    bridge_address: str
    interface: str
    env: dict[str, str]
    workdir: Path
    sshd: list[subprocess.Popen] = field(default_factory=list)

    def hosts_arg(self, slots: int = 1) -> str:
        return ",".join(f"{a}:{slots}" for a in self.addresses)

    def ssh(self, host: str, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["ssh", host, command], capture_output=True, text=True,
                              timeout=timeout, env=self.env)


def _sshd_config(workdir: Path, ns: str, address: str) -> Path:
    key = workdir / f"host_key_{ns}"
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{ns} host", "-f", str(key))
    cfg = workdir / f"sshd_config_{ns}"
    cfg.write_text("\n".join([
        f"ListenAddress {address}:22",
        f"HostKey {key}",
        f"PidFile {workdir / f'sshd_{ns}.pid'}",
        f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "PrintMotd no",
        "UseDNS no",
        "MaxStartups 100:30:200",   # horovodrun opens its ssh sessions at once
        "LogLevel ERROR",
        "",
    ]))
    return cfg


def _ssh_client(workdir: Path, subnet: ipaddress.IPv4Network) -> dict[str, str]:
    ident = workdir / "id_ed25519"
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "reviewlake tests", "-f",
         str(ident))
    (workdir / "authorized_keys").write_text((workdir / "id_ed25519.pub").read_text())
    pattern = ".".join(str(subnet.network_address).split(".")[:3]) + ".*"
    cfg = workdir / "ssh_config"
    cfg.write_text("\n".join([
        f"Host {pattern}",
        "  User root",
        f"  IdentityFile {ident}",
        "  IdentitiesOnly yes",
        "  BatchMode yes",
        "  StrictHostKeyChecking no",
        f"  UserKnownHostsFile {workdir / 'known_hosts'}",
        "  GlobalKnownHostsFile /dev/null",
        "  ConnectTimeout 10",
        "  LogLevel ERROR",
        "Host *",
        "  BatchMode yes",
        "",
    ]))
    bindir = workdir / "bin"
    bindir.mkdir()
    wrapper = bindir / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec {SSH} -F {cfg} "$@"\n')
    wrapper.chmod(0o755)
    home = workdir / "home"
    home.mkdir()
    return {"PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}", "HOME": str(home)}


def _wait_listening(address: str, port: int, proc: subprocess.Popen, log: Path,
                    timeout: float = 20) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd on {address} exited {proc.returncode}: "
                               f"{log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            with socket.create_connection((address, port), timeout=0.5):
                return
        time.sleep(0.1)
    raise RuntimeError(f"sshd on {address}:{port} did not listen within {timeout:.0f} s")


@contextlib.contextmanager
def two_hosts(base: str | os.PathLike | None = None, lock_timeout: float = 600):
    """Two hosts (network namespaces with sshd) for the time of the with-block; see the
    module's docstring. ``base``: where the run's directory goes (a temporary one if None)."""
    reason = unavailable()
    if reason:
        raise HostsUnavailable(reason)
    with open(LOCK, "w") as lock:
        deadline = time.time() + lock_timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.time() > deadline:
                    raise HostsUnavailable(f"another run holds {LOCK} for over "
                                           f"{lock_timeout:.0f} s") from None
                time.sleep(0.5)
        remove_all()   # a crashed run's leftovers: nobody else holds the lock
        workdir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-hosts-", dir=base))
        made_run_sshd = not os.path.isdir("/run/sshd")
        procs: list[subprocess.Popen] = []
        try:
            subnet = free_subnet()
            ips = [str(h) for h in list(subnet.hosts())[:1 + len(NAMESPACES)]]
            bridge_ip, host_ips = ips[0], ips[1:]
            _ip("link", "add", BRIDGE, "type", "bridge")
            _disable_ipv6(None, BRIDGE)
            _ip("addr", "add", f"{bridge_ip}/{subnet.prefixlen}", "dev", BRIDGE)
            _ip("link", "set", BRIDGE, "up")
            for ns, ip in zip(NAMESPACES, host_ips):
                outer, inner = f"{BRIDGE}-{ns[-1]}", f"{BRIDGE}-{ns[-1]}i"
                _ip("netns", "add", ns)
                _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
                _disable_ipv6(None, outer)
                _ip("link", "set", outer, "master", BRIDGE)
                _ip("link", "set", outer, "up")
                _ip("link", "set", inner, "netns", ns)
                _ip("-n", ns, "link", "set", inner, "name", BRIDGE)
                _disable_ipv6(ns, BRIDGE)
                _ip("-n", ns, "addr", "add", f"{ip}/{subnet.prefixlen}", "dev", BRIDGE)
                _ip("-n", ns, "link", "set", BRIDGE, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
            names = "".join(f"{ip} {ns}\n" for ns, ip in zip(NAMESPACES, host_ips))
            for ns in NAMESPACES:
                (NETNS_ETC / ns).mkdir(parents=True)
                (NETNS_ETC / ns / "hosts").write_text(f"127.0.0.1 localhost\n{names}")
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation
            env = _ssh_client(workdir, subnet)
            for ns, ip in zip(NAMESPACES, host_ips):
                cfg = _sshd_config(workdir, ns, ip)
                log = workdir / f"sshd_{ns}.log"
                with open(log, "w") as fh:
                    procs.append(subprocess.Popen(
                        ["ip", "netns", "exec", ns, "unshare", "--uts", "sh", "-c",
                         'hostname "$0" && exec "$@"', ns, SSHD, "-D", "-e", "-f", str(cfg)],
                        stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT))
                _wait_listening(ip, 22, procs[-1], log)
            hosts = Hosts(addresses=host_ips, namespaces=list(NAMESPACES),
                          bridge_address=bridge_ip, interface=BRIDGE,
                          env=dict(os.environ, **env), workdir=workdir, sshd=procs)
            yield hosts
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            remove_all()
            shutil.rmtree(workdir, ignore_errors=True)
            if made_run_sshd:
                with contextlib.suppress(OSError):
                    os.rmdir("/run/sshd")


def _disable_ipv6(ns: str | None, ifname: str) -> None:
    """No IPv6 (not even link-local) on an interface made here: its IPv4 address is its only
    one. Best effort (a kernel without IPv6 has nothing to disable)."""
    path = f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"
    if ns is None:
        with contextlib.suppress(OSError):
            Path(path).write_text("1")
    else:
        _in_ns(ns, "sh", "-c", f"[ -e {path} ] && echo 1 > {path} || true", check=False)
