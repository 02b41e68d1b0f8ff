"""Throwaway guests for host tests: systemd-nspawn machine containers and QEMU VMs.

Both kinds boot the same Debian image (tests/hosts/build-image) and are reached the same way: SSH
and the service ports forwarded on a loopback address of the host that belongs to the guest alone
(127.0.2.N), so every packet stays on loopback or inside the guest's own network namespace.

    nspawn: systemd-nspawn --boot on an overlay of the shared root filesystem, its own network
            namespace wired to the host by slirp4netns (user-mode NAT, port forwards by its API).
    qemu:   a VM on a qcow2 overlay of the shared disk image, direct kernel boot, user-mode
            network with hostfwd; KVM when the machine really has it, else TCG.

Each guest gets its own SSH key, handed to it as the systemd credential `ssh.authorized_keys.root`
(nothing secret is baked into the image). State lives in <repo>/.guests/guests/<name>/.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GUESTS_DIR = Path(os.environ.get("GUESTS_DIR", REPO / ".guests"))
BUILD_IMAGE = HERE / "build-image"

NSPAWN_GUEST_ADDR = "10.0.2.100"  # what slirp4netns --configure gives the container
SSH_HOST_PORT = 2222  # on the guest's own 127.0.2.N address
DEFAULT_FORWARDS = ("80", "443")
KINDS = ("nspawn", "qemu")


class GuestError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"guest: {message}", file=sys.stderr, flush=True)


# --- the image ----------------------------------------------------------------------------------


SUITES = ("bookworm", "trixie")  # Debian 12 and Debian 13


def default_suite() -> str:
    return os.environ.get("GUEST_SUITE") or SUITES[0]


def image_dir(suite: str | None = None) -> Path:
    """Build the image of a Debian suite if it is not cached, and return its cache directory."""
    env = {**os.environ, "GUESTS_DIR": str(GUESTS_DIR), "GUEST_SUITE": suite or default_suite()}
    subprocess.run([str(BUILD_IMAGE)], check=True, env=env)
    out = subprocess.run([str(BUILD_IMAGE), "--print-dir"], check=True, env=env, capture_output=True, text=True)
    return Path(out.stdout.strip())


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def restored_rootfs(cache: Path) -> Path:
    """The image's root filesystem unpacked next to its tarball (shared, read-only lower layer)."""
    rootfs = cache / "rootfs"
    with locked(cache / "restore.lock"):
        if not (cache / "rootfs.complete").exists():
            log(f"restoring {cache.name} root filesystem")
            shutil.rmtree(rootfs, ignore_errors=True)
            rootfs.mkdir()
            subprocess.run(
                [
                    "tar",
                    "--numeric-owner",
                    "--xattrs",
                    "--acls",
                    "-I",
                    "zstd -T0",
                    "-xf",
                    str(cache / "rootfs.tar.zst"),
                    "-C",
                    str(rootfs),
                ],
                check=True,
            )
            (cache / "rootfs.complete").touch()
    return rootfs


def base_disk(cache: Path, size: str = "8G") -> Path:
    """A qcow2 disk made from the root filesystem without loop devices (mkfs.ext4 -d)."""
    disk = cache / "base.qcow2"
    with locked(cache / "disk.lock"):
        if not disk.exists():
            rootfs = restored_rootfs(cache)
            log("making the VM disk image")
            raw = cache / "base.raw"
            subprocess.run(["truncate", "-s", size, str(raw)], check=True)
            subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(rootfs), str(raw)], check=True)
            tmp = cache / "base.qcow2.tmp"
            subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(tmp)], check=True)
            raw.unlink()
            tmp.rename(disk)
    return disk


# --- guest state --------------------------------------------------------------------------------


@dataclass
class Forward:
    host_port: int
    guest_port: int


@dataclass
class Guest:
    name: str
    kind: str
    address: str  # host-side loopback address that belongs to this guest
    ssh_port: int
    forwards: list[Forward] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)
    accel: str = ""
    image: str = ""
    network: str = ""  # nspawn guests sharing a network see each other; empty: a network of its own
    lan_address: str = ""  # the guest's address on its network (10.0.2.x)

    @property
    def dir(self) -> Path:
        return guest_dir(self.name)

    @property
    def identity_file(self) -> Path:
        return self.dir / "id_ed25519"

    def save(self) -> None:
        data = asdict(self)
        (self.dir / "guest.json").write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, name: str) -> Guest | None:
        path = guest_dir(name) / "guest.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data["forwards"] = [Forward(**f) for f in data.get("forwards", [])]
        return cls(**data)

    def alive(self) -> dict[str, bool]:
        return {
            role: container_init_is(pid, self.name) if role == "init" else pid_is(pid, self.name)
            for role, pid in self.pids.items()
        }

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "address": self.address,
            "ssh_port": self.ssh_port,
            "user": "root",
            "identity_file": str(self.identity_file),
            "forwards": {str(f.guest_port): f"{self.address}:{f.host_port}" for f in self.forwards},
            "accel": self.accel,
            "network": self.network,
            "lan_address": self.lan_address or (NSPAWN_GUEST_ADDR if self.kind == "nspawn" else "10.0.2.15"),
            "running": all(self.alive().values()) if self.pids else False,
            "ssh": " ".join(shlex.quote(a) for a in ssh_command(self)),
        }


def guest_dir(name: str) -> Path:
    return GUESTS_DIR / "guests" / name


def pid_is(pid: int, marker: str) -> bool:
    """True when pid is alive and still the process we started (its command line names the guest)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    if "\nState:\tZ" in status:
        return False
    # an empty command line is a process between fork and exec (nsenter becoming systemd-nspawn)
    return marker in cmdline or not cmdline


def container_init_is(pid: int, name: str) -> bool:
    """True when pid is alive and the init of the nspawn container we named (its /etc/hostname)."""
    try:
        hostname = Path(f"/proc/{pid}/root/etc/hostname").read_text().strip()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return hostname == name and "\nState:\tZ" not in status


def valid_name(name: str) -> str:
    if not name or len(name) > 40 or not all(c.isalnum() or c == "-" for c in name) or name[0] == "-":
        raise GuestError(f"bad guest name {name!r}: letters, digits and '-' only")
    return name


def allocate_address() -> str:
    """The next free 127.0.2.N after the one handed out last (called under allocate.lock).

    Round robin rather than lowest-free, so a new guest does not inherit the address of one just
    destroyed, nor the SSH connections (ControlPersist) and known-host entries still pointing at it.
    """
    used = set()
    for state in (GUESTS_DIR / "guests").glob("*/guest.json"):
        with contextlib.suppress(ValueError, OSError):
            used.add(json.loads(state.read_text())["address"])
    last_file = GUESTS_DIR / "last-address"
    try:
        last = int(last_file.read_text().rsplit(".", 1)[-1])
    except (OSError, ValueError):
        last = 9
    pool = list(range(10, 250))
    start = pool.index(last) + 1 if last in pool else 0
    for n in pool[start:] + pool[:start]:
        address = f"127.0.2.{n}"
        if address not in used and port_free(address, SSH_HOST_PORT):
            last_file.write_text(address + "\n")
            return address
    raise GuestError("no free 127.0.2.N address")


def port_free(address: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def parse_forward(spec: str) -> Forward:
    """'443' forwards host 443 to guest 443; '8443:443' forwards host 8443 to guest 443."""
    host, _, guest = spec.partition(":")
    return Forward(int(host), int(guest or host))


# --- ssh ----------------------------------------------------------------------------------------


SSH_OPTIONS = (
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=5",
)


def ssh_command(guest: Guest, *command: str) -> list[str]:
    return [
        "ssh",
        *SSH_OPTIONS,
        "-i",
        str(guest.identity_file),
        "-p",
        str(guest.ssh_port),
        f"root@{guest.address}",
        *command,
    ]


def wait_for_ssh(guest: Guest, timeout: float) -> float:
    start = time.monotonic()
    while True:
        if not all(guest.alive().values()):
            raise GuestError(f"{guest.name}: a guest process died while booting; see {guest.dir}/*.log")
        try:
            done = subprocess.run(
                ssh_command(guest, "systemctl", "is-system-running", "--wait"),
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise GuestError(f"{guest.name}: boot did not finish in {timeout:.0f} s") from exc
        # is-system-running exits non-zero for "degraded" too; a booted system is what matters
        if done.returncode == 0 or done.stdout.strip() in ("running", "degraded"):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise GuestError(f"{guest.name}: no SSH after {timeout:.0f} s ({done.stderr.strip()})")
        time.sleep(0.5)


# --- nspawn -------------------------------------------------------------------------------------


def spawn(command: Sequence[str], logfile: Path) -> subprocess.Popen[bytes]:
    with logfile.open("ab") as out:
        return subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def netns_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return ""


def slirp_call(sock: Path, request: dict[str, object]) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        s.sendall(json.dumps(request).encode())
        s.shutdown(socket.SHUT_WR)
        reply = json.loads(s.makefile().read() or "{}")
    if "error" in reply:
        raise GuestError(f"slirp4netns {request['execute']}: {reply['error']}")
    return reply


def slirp_socket(guest: Guest) -> Path:
    return network_dir(guest.network) / "slirp.sock" if guest.network else guest.dir / "slirp.sock"


def add_forward(guest: Guest, forward: Forward) -> None:
    if guest.kind == "nspawn":
        slirp_call(
            slirp_socket(guest),
            {
                "execute": "add_hostfwd",
                "arguments": {
                    "proto": "tcp",
                    "host_addr": guest.address,
                    "host_port": forward.host_port,
                    "guest_addr": guest.lan_address or NSPAWN_GUEST_ADDR,
                    "guest_port": forward.guest_port,
                },
            },
        )
    else:
        reply = hmp(guest, f"hostfwd_add tcp:{guest.address}:{forward.host_port}-:{forward.guest_port}")
        if reply.strip():
            raise GuestError(f"qemu hostfwd_add: {reply.strip()}")


# --- shared networks (nspawn) ---------------------------------------------------------------------
#
# Guests that must reach each other (the multi-host scenario) share one network: a network namespace
# holding a bridge, on which each guest's veth and slirp4netns's tap sit side by side. slirp4netns
# is the gateway (10.0.2.2), DNS (10.0.2.3) and NAT for all of them, and forwards each guest's ports
# from the guest's own 127.0.2.N address; guests get static addresses 10.0.2.101, .102, ...


def network_dir(network: str) -> Path:
    return GUESTS_DIR / "networks" / network


def netns_name(network: str) -> str:
    return f"guests-{network}"


def network_up(network: str) -> None:
    ndir = network_dir(network)
    state = ndir / "network.json"
    if state.exists() and pid_is(json.loads(state.read_text())["slirp4netns"], str(ndir)):
        return
    network_down(network)
    ndir.mkdir(parents=True)
    ns = netns_name(network)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    for command in (
        ["link", "set", "lo", "up"],
        ["link", "add", "br0", "type", "bridge"],
        ["link", "set", "br0", "up"],
    ):
        subprocess.run(["ip", "-n", ns, *command], check=True)
    sock = ndir / "slirp.sock"
    slirp = spawn(
        [
            "slirp4netns",
            "--netns-type=path",
            "--mtu=1500",
            "--disable-host-loopback",
            "--api-socket",
            str(sock),
            f"/run/netns/{ns}",
            "tap0",
        ],
        ndir / "slirp4netns.log",
    )
    state.write_text(json.dumps({"slirp4netns": slirp.pid}) + "\n")
    deadline = time.monotonic() + 10
    while not sock.exists():
        if slirp.poll() is not None or time.monotonic() > deadline:
            raise GuestError(f"slirp4netns did not start; see {ndir}/slirp4netns.log")
        time.sleep(0.05)
    subprocess.run(["ip", "-n", ns, "link", "set", "tap0", "master", "br0", "up"], check=True)


def network_down(network: str) -> None:
    ndir = network_dir(network)
    state = ndir / "network.json"
    if state.exists():
        stop_pid(json.loads(state.read_text())["slirp4netns"], str(ndir), timeout=5)
    if Path(f"/run/netns/{netns_name(network)}").exists():
        subprocess.run(["ip", "netns", "delete", netns_name(network)], check=False)
    shutil.rmtree(ndir, ignore_errors=True)


def network_members(network: str, excluding: str = "") -> list[Guest]:
    return [g for g in all_guests() if g.network == network and g.name != excluding]


def leave_network(guest: Guest) -> None:
    """Drop the guest's port forwards; take the network down when its last guest leaves."""
    if not network_members(guest.network, excluding=guest.name):
        network_down(guest.network)
        return
    with contextlib.suppress(OSError, GuestError):
        listed = slirp_call(slirp_socket(guest), {"execute": "list_hostfwd"})
        for entry in listed.get("return", {}).get("entries", []):  # type: ignore[union-attr]
            if entry.get("host_addr") == guest.address:
                slirp_call(slirp_socket(guest), {"execute": "remove_hostfwd", "arguments": {"id": entry["id"]}})


def start_nspawn(guest: Guest, cache: Path, pubkey: str) -> None:
    rootfs = restored_rootfs(cache)
    upper = guest.dir / "upper"
    (upper / "etc").mkdir(parents=True)
    # the image's /etc/hostname would win over the machine name nspawn sets
    (upper / "etc" / "hostname").write_text(f"{guest.name}\n")
    if guest.network:
        (upper / "etc/systemd/network").mkdir(parents=True)
        (upper / "etc/systemd/network/10-host0.network").write_text(
            f"[Match]\nName=host0\n\n[Network]\nAddress={guest.lan_address}/24\nGateway=10.0.2.2\n"
            "DNS=10.0.2.3\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
        )
        # nsenter, not `ip netns exec`: that remounts /sys and hides the cgroup tree from nspawn
        prefix = ["nsenter", f"--net=/run/netns/{netns_name(guest.network)}"]
        network = ["--network-bridge=br0"]
    else:
        prefix, network = [], ["--private-network"]
    nspawn = spawn(
        [
            *prefix,
            "systemd-nspawn",
            "--boot",
            "-D",
            str(rootfs),
            f"--machine={guest.name}",
            "--register=no",
            "--keep-unit",
            "--console=passive",
            *network,
            f"--overlay={rootfs}:{upper}:/",
            "--resolv-conf=off",
            "--timezone=off",
            f"--set-credential=ssh.authorized_keys.root:{pubkey}",
        ],
        guest.dir / "nspawn.log",
    )
    guest.pids["nspawn"] = nspawn.pid
    # nspawn's first child is a helper still in nspawn's namespaces; the container's init (its own
    # network namespace) comes next, also as nspawn's child (nspawn is its subreaper). Remember it:
    # if nspawn ever dies by SIGKILL, the container lives on and `down` must kill it itself.
    deadline = time.monotonic() + 30
    while not (init := [p for p in children(nspawn.pid) if netns_of(p) not in ("", netns_of(nspawn.pid))]):
        if nspawn.poll() is not None or time.monotonic() > deadline:
            raise GuestError(f"systemd-nspawn did not start; see {guest.dir}/nspawn.log")
        time.sleep(0.05)
    guest.pids["init"] = init[0]
    if guest.network:
        return
    sock = guest.dir / "slirp.sock"
    slirp = spawn(
        [
            "slirp4netns",
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            "--api-socket",
            str(sock),
            str(init[0]),
            "host0",
        ],
        guest.dir / "slirp4netns.log",
    )
    # slirp4netns's command line names the pid, not the guest: remember it by its socket path
    guest.pids["slirp4netns"] = slirp.pid
    deadline = time.monotonic() + 10
    while not sock.exists():
        if slirp.poll() is not None or time.monotonic() > deadline:
            raise GuestError(f"slirp4netns did not start; see {guest.dir}/slirp4netns.log")
        time.sleep(0.05)


# --- qemu ---------------------------------------------------------------------------------------


def kvm_works() -> bool:
    """Real hardware virtualisation: /dev/kvm usable and the CPU advertising vmx or svm.

    A nested 'PVM' KVM (as on the CI machines) offers /dev/kvm without either flag, and Debian's
    kernel never boots under it, so that case counts as no KVM.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    flags = Path("/proc/cpuinfo").read_text()
    return " vmx" in flags or " svm" in flags


def choose_accel() -> str:
    accel = os.environ.get("GUEST_QEMU_ACCEL", "auto")
    if accel == "auto":
        return "kvm" if kvm_works() else "tcg"
    if accel not in ("kvm", "tcg"):
        raise GuestError(f"GUEST_QEMU_ACCEL={accel}: use auto, kvm or tcg")
    return accel


def hmp(guest: Guest, command: str) -> str:
    """One human-monitor command over the VM's monitor socket."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(guest.dir / "monitor.sock"))
        s.sendall(
            json.dumps({"execute": "qmp_capabilities"}).encode()
            + json.dumps({"execute": "human-monitor-command", "arguments": {"command-line": command}}).encode()
        )
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            complete = buf.decode().rpartition("\n")[0]
            replies = [json.loads(line) for line in complete.splitlines() if line.strip()]
            answers = [r for r in replies if "return" in r or "error" in r]
            if len(answers) >= 2:
                last = answers[1]
                if "error" in last:
                    raise GuestError(f"qemu: {last['error']}")
                return str(last["return"])
    raise GuestError("qemu monitor closed")


def start_qemu(guest: Guest, cache: Path, pubkey: str) -> None:
    base = base_disk(cache)
    disk = guest.dir / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(disk)], check=True)
    guest.accel = choose_accel()
    cpu = ["-accel", "kvm", "-cpu", "host"] if guest.accel == "kvm" else ["-accel", "tcg", "-cpu", "max"]
    hostfwd = ",".join(
        f"hostfwd=tcp:{guest.address}:{f.host_port}-:{f.guest_port}"
        for f in [Forward(guest.ssh_port, 22), *guest.forwards]
    )
    credential = base64.b64encode(pubkey.encode()).decode()
    memory = os.environ.get("GUEST_QEMU_MEMORY", "2048")
    # One vCPU under TCG: on a busy 2-core machine two emulated vCPUs starve each other into soft
    # lockups (measured: a reboot stalled in udev for minutes at load 7).
    smp = os.environ.get("GUEST_QEMU_SMP", "2" if guest.accel == "kvm" else "1")
    subprocess.run(
        [
            "qemu-system-x86_64",
            *cpu,
            "-m",
            memory,
            "-smp",
            smp,
            "-nodefaults",
            "-display",
            "none",
            "-name",
            f"guest-{guest.name},process=qemu-guest-{guest.name}",
            "-serial",
            f"file:{guest.dir}/console.log",
            "-kernel",
            str(cache / "vmlinuz"),
            "-initrd",
            str(cache / "initrd.img"),
            "-append",
            f"root=/dev/vda rw console=ttyS0 quiet systemd.hostname={guest.name}",
            "-drive",
            f"file={disk},if=virtio,format=qcow2,cache=unsafe",
            "-netdev",
            f"user,id=n0,{hostfwd}",
            "-device",
            "virtio-net-pci,netdev=n0",
            "-device",
            "virtio-rng-pci",
            "-smbios",
            f"type=11,value=io.systemd.credential.binary:ssh.authorized_keys.root={credential}",
            "-qmp",
            f"unix:{guest.dir}/monitor.sock,server=on,wait=off",
            "-pidfile",
            f"{guest.dir}/qemu.pid",
            "-daemonize",
        ],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    guest.pids["qemu"] = int((guest.dir / "qemu.pid").read_text())


# --- commands -----------------------------------------------------------------------------------


def up(
    name: str,
    kind: str = "nspawn",
    forwards: Sequence[str] = DEFAULT_FORWARDS,
    timeout: float | None = None,
    network: str = "",
    suite: str | None = None,
) -> Guest:
    valid_name(name)
    if kind not in KINDS:
        raise GuestError(f"kind must be one of {', '.join(KINDS)}")
    suite = suite or default_suite()
    if suite not in SUITES:
        raise GuestError(f"suite must be one of {', '.join(SUITES)}")
    if network and kind != "nspawn":
        raise GuestError("--network is for nspawn guests (QEMU guests each have their own network)")
    if network:
        valid_name(network)
    existing = Guest.load(name)
    if existing and existing.pids and all(existing.alive().values()):
        if existing.kind != kind:
            raise GuestError(f"{name} is already up as a {existing.kind} guest")
        return existing
    if existing or guest_dir(name).exists():
        down(name)
    cache = image_dir(suite)
    with locked(GUESTS_DIR / "allocate.lock"):
        address = allocate_address()
        guest = Guest(
            name=name,
            kind=kind,
            address=address,
            ssh_port=SSH_HOST_PORT,
            forwards=[parse_forward(f) for f in forwards],
            image=cache.name,
            network=network,
        )
        if network:
            taken = {g.lan_address for g in network_members(network)}
            guest.lan_address = next(f"10.0.2.{n}" for n in range(101, 200) if f"10.0.2.{n}" not in taken)
            network_up(network)
        for f in guest.forwards:
            if not port_free(address, f.host_port):
                raise GuestError(f"{address}:{f.host_port} is taken")
        guest.dir.mkdir(parents=True)
        guest.save()
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            f"guest-{name}",
            "-f",
            str(guest.identity_file),
        ],
        check=True,
    )
    pubkey = guest.identity_file.with_suffix(".pub").read_text().strip()
    start = time.monotonic()
    try:
        if kind == "nspawn":
            start_nspawn(guest, cache, pubkey)
            guest.save()
            for forward in [Forward(guest.ssh_port, 22), *guest.forwards]:
                add_forward(guest, forward)
        else:
            start_qemu(guest, cache, pubkey)
            guest.save()
        default_timeout = 60 if kind == "nspawn" else (120 if guest.accel == "kvm" else 300)
        wait_for_ssh(guest, timeout or default_timeout)
    except BaseException:
        guest.save()
        down(name, keep_logs=True)
        raise
    log(
        f"{name}: {kind}{' ' + guest.accel if guest.accel else ''} up in {time.monotonic() - start:.1f} s,"
        f" ssh root@{guest.address} -p {guest.ssh_port}"
    )
    return guest


def stop_pid(pid: int, marker: str, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    if not pid_is(pid, marker):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while pid_is(pid, marker):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.1)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def down(name: str, keep_logs: bool = False) -> None:
    guest = Guest.load(name)
    gdir = guest_dir(name)
    if guest:
        # nspawn powers the container off on SIGTERM; QEMU quits at once (the disk is thrown away)
        for role in ("nspawn", "qemu"):
            if role in guest.pids:
                stop_pid(guest.pids[role], name, timeout=15)
        # a container whose nspawn had to be SIGKILLed keeps running: killing its init ends it
        init = guest.pids.get("init")
        if init and container_init_is(init, name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(init, signal.SIGKILL)
        if "slirp4netns" in guest.pids:
            stop_pid(guest.pids["slirp4netns"], str(gdir), timeout=5)
        if guest.network:
            with locked(GUESTS_DIR / "allocate.lock"):
                leave_network(guest)
    if keep_logs and gdir.exists():
        for item in gdir.iterdir():
            if item.suffix != ".log":
                shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)
        log(f"{name}: logs kept in {gdir}")
    else:
        shutil.rmtree(gdir, ignore_errors=True)


def all_guests() -> list[Guest]:
    return [g for d in sorted((GUESTS_DIR / "guests").glob("*")) if (g := Guest.load(d.name))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="guest", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start a guest (builds or restores the image when needed)")
    p_up.add_argument("name")
    p_up.add_argument("--kind", choices=KINDS, default=os.environ.get("GUEST_KIND", "nspawn"))
    p_up.add_argument(
        "--forward",
        action="append",
        metavar="[HOST:]GUEST",
        help="TCP port to forward on the guest's address (default: 80 and 443; repeatable)",
    )
    p_up.add_argument("--timeout", type=float, help="seconds to wait for SSH")
    p_up.add_argument("--network", default="", help="nspawn: join this shared network (guests on it reach each other)")
    p_up.add_argument(
        "--suite", choices=SUITES, help="Debian release of the guest's image (default: $GUEST_SUITE, else bookworm)"
    )
    p_up.add_argument("--json", action="store_true", help="print the guest's details as JSON")
    p_down = sub.add_parser("down", help="stop a guest and remove its state (nothing is left running)")
    p_down.add_argument("names", nargs="+", metavar="name")
    p_ssh = sub.add_parser("ssh", help="run a command in the guest (or a shell)")
    p_ssh.add_argument("name")
    p_ssh.add_argument("cmd", nargs=argparse.REMAINDER)
    p_status = sub.add_parser("status", help="show guests and whether their processes are alive")
    p_status.add_argument("names", nargs="*", metavar="name")
    p_status.add_argument("--json", action="store_true")
    p_fwd = sub.add_parser("forward", help="forward another TCP port of a running guest")
    p_fwd.add_argument("name")
    p_fwd.add_argument("spec", metavar="[HOST:]GUEST")
    p_image = sub.add_parser("image", help="build the image if needed and print its cache directory")
    p_image.add_argument("--suite", choices=SUITES, help="Debian release (default: $GUEST_SUITE, else bookworm)")
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            forwards = args.forward if args.forward is not None else DEFAULT_FORWARDS
            guest = up(args.name, args.kind, forwards, args.timeout, args.network, args.suite)
            summary = guest.summary()
            print(json.dumps(summary, indent=2) if args.json else summary["ssh"])
        elif args.command == "down":
            # at once: each container's poweroff takes seconds, and scenarios stop two to five
            with ThreadPoolExecutor(max_workers=len(args.names)) as pool:
                list(pool.map(down, args.names))
        elif args.command == "ssh":
            guest = Guest.load(args.name)
            if not guest:
                raise GuestError(f"no guest {args.name}")
            cmd = ssh_command(guest, *args.cmd)
            if not args.cmd:
                cmd.insert(1, "-t")
            os.execvp(cmd[0], cmd)  # noqa: S606 (ssh replaces this process, as `guest ssh` should)
        elif args.command == "status":
            guests = [g for g in all_guests() if not args.names or g.name in args.names]
            if args.json:
                print(json.dumps([g.summary() for g in guests], indent=2))
            for g in [] if args.json else guests:
                s = g.summary()
                state = "running" if s["running"] else "stopped"
                print(
                    f"{g.name}\t{g.kind}\t{state}\tssh {g.address}:{g.ssh_port}\t"
                    + " ".join(f"{k}->{v}" for k, v in s["forwards"].items())
                )
            if args.names and not guests:
                return 1
        elif args.command == "forward":
            guest = Guest.load(args.name)
            if not guest:
                raise GuestError(f"no guest {args.name}")
            forward = parse_forward(args.spec)
            add_forward(guest, forward)
            guest.forwards.append(forward)
            guest.save()
            print(f"{guest.address}:{forward.host_port}")
        elif args.command == "image":
            print(image_dir(args.suite))
    except (GuestError, subprocess.CalledProcessError) as exc:
        log(str(exc))
        return 1
    return 0
