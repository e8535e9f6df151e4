"""A real single-node Slurm cluster (munge + slurmctld + slurmd) in a scratch folder.

Started and stopped by process id; everything it writes (config, key, spool, state, logs) stays
under its folder. Used by the factory tests and benchmarks/bench_factory.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo", "srun")
SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
EXTRA_ADDR = "192.0.2.1"


def missing_binaries() -> list[str]:
    path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
    return [b for b in BINARIES if shutil.which(b, path=path) is None]


def _which(name: str) -> str:
    path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
    found = shutil.which(name, path=path)
    if found is None:
        raise FileNotFoundError(name)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SlurmCluster:
    root: Path
    cpus: int = 2
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def _write_config(self) -> None:
        r = self.root
        for d in ("state", "spool", "log", "munge"):
            (r / d).mkdir(parents=True, exist_ok=True)
        os.chmod(r / "munge", 0o700)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        node = socket.gethostname()
        ctl_port, d_port = _free_port(), _free_port()
        # cred_expire: a requeued job may start again cred_expire + 1 s later (120 s by default).
        self.conf.write_text(f"""\
ClusterName=casemate-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctl_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r}/munge/munge.socket,cred_expire=5
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool/%n
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=50000,sched_interval=1
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=2
JobRequeue=1
PluginDir=/usr/lib/x86_64-linux-gnu/slurm-wlm
NodeName={node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
""")

    def _ensure_addrconfig(self) -> None:
        """Slurm resolves its listening address with AI_ADDRCONFIG, which finds nothing where the
        only address is 127.0.0.1 (the test suite's network namespace). There, give loopback a
        second, documentation address (192.0.2.1: it leads nowhere)."""
        if os.geteuid() != 0 or {name for _, name in socket.if_nameindex()} != {"lo"}:
            return
        ip = _which("ip")
        shown = subprocess.run([ip, "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
        if any(a for a in shown.split() if "/" in a and not a.startswith("127.")):
            return
        subprocess.run([ip, "addr", "add", f"{EXTRA_ADDR}/32", "dev", "lo"], check=True, capture_output=True)
        self._extra_addr = True

    def start(self, timeout: float = 30.0) -> SlurmCluster:
        self._ensure_addrconfig()
        self._write_config()
        r = self.root
        env = {**os.environ, **self.env}
        munge = subprocess.Popen(
            [_which("munged"), "-F", "-f", f"--socket={r}/munge/munge.socket", f"--key-file={r}/munge/munge.key",
             f"--pid-file={r}/munge/munged.pid", f"--log-file={r}/log/munged.log", f"--seed-file={r}/munge/seed"],
            stdout=subprocess.DEVNULL, stderr=open(r / "log" / "munged.err", "wb"), start_new_session=True)
        self.pids["munged"] = munge.pid
        self._wait(lambda: (r / "munge" / "munge.socket").exists(), timeout, "munged")
        ctl = subprocess.Popen([_which("slurmctld"), "-D", "-i", "-f", str(self.conf)], env=env,
                               stdout=subprocess.DEVNULL, stderr=open(r / "log" / "slurmctld.err", "wb"),
                               start_new_session=True)
        self.pids["slurmctld"] = ctl.pid
        d = subprocess.Popen([_which("slurmd"), "-D", "-f", str(self.conf), "-N", socket.gethostname()], env=env,
                             stdout=subprocess.DEVNULL, stderr=open(r / "log" / "slurmd.err", "wb"),
                             start_new_session=True)
        self.pids["slurmd"] = d.pid
        self._procs = [munge, ctl, d]

        def idle() -> bool:
            out = subprocess.run([_which("sinfo"), "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            return out.returncode == 0 and out.stdout.strip() in ("idle", "mixed", "allocated")

        self._wait(idle, timeout, "slurmd (node idle)")
        return self

    def _wait(self, ok, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in getattr(self, "_procs", []):
                if p.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"{what}: a daemon exited ({p.args[0]}); see {self.root}/log")
            if ok():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{what} not ready after {timeout} s; see {self.root}/log")

    def _our_stepds(self) -> list[int]:
        """Job step daemons of this cluster (their environment names our slurm.conf)."""
        out = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                if (d / "comm").read_text().strip() != "slurmstepd":
                    continue
                env = (d / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"SLURM_CONF={self.conf}".encode() in env:
                out.append(int(d.name))
        return out

    def stop(self) -> None:
        """Stop the jobs, then the daemons we started, by process id (slurmd first)."""
        if self.pids.get("slurmctld"):
            env = {**os.environ, **self.env}
            subprocess.run([_which("scancel"), "--user", str(os.getuid())], env=env, capture_output=True, timeout=30)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                q = subprocess.run([_which("squeue"), "-h"], env=env, capture_output=True, text=True, timeout=30)
                if q.returncode != 0 or not q.stdout.strip():
                    break
                time.sleep(0.2)
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for p in getattr(self, "_procs", []):
                if p.pid == pid:
                    try:
                        p.wait(10)
                    except subprocess.TimeoutExpired:
                        os.killpg(pid, signal.SIGKILL)
                        p.wait(5)
        if getattr(self, "_extra_addr", False):
            subprocess.run([_which("ip"), "addr", "del", f"{EXTRA_ADDR}/32", "dev", "lo"], capture_output=True)
            self._extra_addr = False
        for pid in self._our_stepds():  # a step daemon that outlived its slurmd
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
