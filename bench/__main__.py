"""`sudo .venv/bin/python -m bench [--quick]`: build the lab, measure the deploy on bn* hosts, write the table.

See bench/README.md for what is measured and how. Every bn* host, the relay instance, its address
and DNS name, and the keyring are removed at the end, also on a failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import jinja2

from bench import labkit, peer
from bench.figure import scaling_svg
from bench.labkit import host_name
from bench.runner import (
    PROJECT,
    PYINFRA,
    BenchError,
    Counted,
    SshMaster,
    Timed,
    count_commands,
    deploy,
    deploy_env,
    parallel_floor,
    run_timed,
    timed_ssh,
)
from bench.stats import Row, markdown_table, median
from lab import hosts, smarthost
from lab.config import STATE_DIR
from lab.keyring import BACKEND as SECRET_SERVICE_BACKEND
from lab.tools import require_root
from postfix_nullclient.alerts import FLUSH_INTERVAL, FLUSH_PATH_NAME
from postfix_nullclient.model import APT_INSTALL, DEBCONF_PRESEED, FAMILIES, script_context
from postfix_nullclient.nullclient.passwords import generate_password

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
RESULTS_MD = BENCH_DIR / "RESULTS.md"
SCALING_SVG = BENCH_DIR / "scaling.svg"

_DEBIAN = next(f for f in FAMILIES if f.name == "debian")
PACKAGES = [*_DEBIAN.packages, _DEBIAN.mail_package]  # what the deploy installs on Debian
# The very installation command of the deploy (tasks/packages.py: preseed, apt-get update, install), bare.
BARE_INSTALL = f"printf %s {shlex.quote(DEBCONF_PRESEED)} | {{ {APT_INSTALL} {' '.join(PACKAGES)}; }} >/dev/null"


def _render(name: str) -> str:
    """bench/NAME.sh.j2 with the model's layout (postfix_nullclient.model), as the deploy's own scripts."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(BENCH_DIR), undefined=jinja2.StrictUndefined, trim_blocks=True
    )
    return environment.get_template(f"{name}.sh.j2").render(script_context())


HASH_AND_STATE = _render("hash_and_state")
APPLY_STEPS = _render("apply_steps")
BATCH = 20  # hosts configured at once when preparing the scale set (not measured for the table)
# The network coming back: a host of its own, whose link goes down (its name is not bn*: no re-deploy of
# bn1..bnN ever waits on a link that is down), NETWORK_BACK_RUNS runs with the flush hook and as many
# without, each waiting at most NETWORK_BACK_CAP seconds for the mail.
LINK_HOST = "bl1"
NETWORK_BACK_RUNS = 3
NETWORK_BACK_CAP = 90.0


@dataclass(frozen=True)
class Plan:
    first_runs: int  # first deploy of one fresh host (and the bare install beside it)
    first10_runs: int  # first deploy of 10 fresh hosts at once
    runs: int  # no-change re-deploys, per size
    floor_runs: int  # pyinfra --version and the SSH floors
    max_hosts: int  # the largest no-change re-deploy
    mails: int
    quick: bool
    peer_hosts: int  # the largest no-change rerun of the Ansible peer (an1..anN)
    only: str | None = None  # "network-back": that measurement alone

    @property
    def sizes(self) -> list[int]:
        return sorted({1, min(10, self.max_hosts), self.max_hosts})

    @property
    def peer_sizes(self) -> list[int]:
        return sorted({1, self.peer_hosts})


def parse_args(argv: list[str] | None) -> Plan:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short check: 1 first deploy, 3 re-deploys, 10 hosts")
    parser.add_argument("--runs", type=int, help="no-change re-deploys per size (default 5; quick 3)")
    parser.add_argument("--first-runs", type=int, help="first deploys of 1 and of 10 hosts (default 3; quick 1)")
    parser.add_argument("--hosts", type=int, help="hosts of the largest re-deploy (default 50; quick 10)")
    parser.add_argument("--mails", type=int, help="mails for the latency (default 100; quick 20)")
    parser.add_argument(
        "--peer-hosts", type=int, help="hosts of the Ansible peer's largest rerun (default 10; quick 1)"
    )
    parser.add_argument(
        "--only", choices=["network-back"], help="one measurement alone: mail deferred offline, the link back"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    plan = Plan(
        first_runs=args.first_runs or (1 if quick else 3),
        first10_runs=args.first_runs or (1 if quick else 3),
        runs=args.runs or (3 if quick else 5),
        floor_runs=5 if quick else 10,
        max_hosts=args.hosts or (10 if quick else 50),
        mails=args.mails or (20 if quick else 100),
        quick=quick,
        peer_hosts=args.peer_hosts or (1 if quick else 10),
        only=args.only,
    )
    if not 10 <= plan.max_hosts <= 50:
        parser.error("--hosts must be 10 to 50 (bn1..bn50)")
    if not 1 <= plan.peer_hosts <= 10:
        parser.error("--peer-hosts must be 1 to 10 (an1..an10)")
    return plan


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


class Bench:
    def __init__(self, plan: Plan, out: Path) -> None:
        self.plan = plan
        self.logs = out / "logs"
        self.hosts = labkit.Hosts()
        self.env: dict[str, str] = {}
        self.rows: list[Row] = []
        self.diagnostic_rows: list[Row] = []
        self.raw: dict[str, object] = {}
        self.figure: list[tuple[str, list[tuple[int, float]]]] = []  # the scaling figure's series

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def names(self, count: int) -> list[str]:
        return [host_name(k) for k in range(1, count + 1)]

    def peer_names(self, count: int) -> list[str]:
        return [f"an{k}" for k in range(1, count + 1)]

    # --- the run ---------------------------------------------------------------------------------------------

    def run(self) -> None:
        with ExitStack() as stack:
            stack.callback(self.hosts.destroy_all)
            first = [LINK_HOST] if self.plan.only else self.names(2)
            say(f"booting {', '.join(first)} (the lab's shared parts first, if it is down)")
            self.hosts.fresh(first)
            say("starting our relay bn-relay and our keyring")
            stack.enter_context(labkit.relay())
            self.env = stack.enter_context(labkit.keyring_session())
            names = [LINK_HOST]
            if not self.plan.only:
                names += self.names(self.plan.max_hosts) + self.peer_names(self.plan.peer_hosts)
            passwords = {name: generate_password() for name in names}
            labkit.set_accounts(passwords)
            labkit.store_passwords(self.env, passwords)
            if self.plan.only:
                del passwords
                self.network_back()
                self.raw["hosts"] = self.host_versions(LINK_HOST)
                say(f"removing {LINK_HOST}, the relay and the keyring")
                return
            self.ansible = stack.enter_context(peer.peer())
            self.ansible_passwords = {name: passwords[name] for name in self.peer_names(self.plan.peer_hosts)}
            del passwords

            self.first_deploy_one()
            self.first_deploy_ten()
            self.configure_the_rest()
            self.peer_setup()
            self.floors()
            self.redeploys()
            self.mail_latency()
            self.network_back()
            self.diagnostics()
            self.raw["hosts"] = self.host_versions()
            say("removing the bn* hosts, the relay and the keyring")

    def first_deploy_one(self) -> None:
        """A fresh host deployed, beside a bare apt-get install of the same packages on an identical host."""
        totals, bares, differences, configure_only, rss = [], [], [], [], []
        for run in range(self.plan.first_runs):
            if run:
                self.hosts.fresh(self.names(2))
            deployed, bare = labkit.lab_host("bn1"), labkit.lab_host("bn2")
            for step in ("deploy", "bare") if run % 2 == 0 else ("bare", "deploy"):  # alternate: no order bias
                if step == "deploy":
                    say(f"first deploy of one fresh host, run {run + 1}/{self.plan.first_runs}")
                    timed = deploy(self.env, [deployed.name], self.log(f"first1-{run}"))
                    totals.append(timed.seconds)
                    rss.append(timed.max_rss_mib)
                else:
                    say(f"bare apt-get install on an identical fresh host, run {run + 1}/{self.plan.first_runs}")
                    bares.append(timed_ssh(["ssh", *hosts.ssh_options()], bare.address, BARE_INSTALL))
            differences.append(totals[-1] - bares[-1])
            say("first configuration of the host that has the packages now")
            configure_only.append(deploy(self.env, [bare.name], self.log(f"configure-only-{run}")).seconds)
        self.rows += [
            Row("first deploy, 1 fresh host: total", totals, "s"),
            Row("bare apt-get update + install of the same packages, 1 fresh host", bares, "s",
                note="one ssh command: preseed, update, install"),
            Row("first deploy minus the bare install (not the installation)", differences, "s",
                note="per run: deploy - bare, same run"),
            Row("first configuration of a host with the packages already installed", configure_only, "s"),
            Row("peak RSS of pyinfra, first deploy of 1 host", rss, "MiB"),
        ]  # fmt: skip

    def first_deploy_ten(self) -> None:
        names = self.names(10)
        seconds, rss = [], []
        for run in range(self.plan.first10_runs):
            say(f"booting 10 fresh hosts; first deploy of 10 at once, run {run + 1}/{self.plan.first10_runs}")
            self.hosts.fresh(names)
            timed = deploy(self.env, names, self.log(f"first10-{run}"))
            seconds.append(timed.seconds)
            rss.append(timed.max_rss_mib)
        self.rows.append(Row("first deploy, 10 fresh hosts at once", seconds, "s", extra={"max_rss_mib": rss}))

    def configure_the_rest(self) -> None:
        """bn11..bnN get postfix configured (counted, not in the table), so that all can be re-deployed."""
        rest = [host_name(k) for k in range(11, self.plan.max_hosts + 1)]
        first_counts: dict[str, dict] = {}
        for start in range(0, len(rest), BATCH):
            batch = rest[start : start + BATCH]
            say(f"booting and configuring {batch[0]}..{batch[-1]} (preparation for the scale runs)")
            self.hosts.fresh(batch)
            first_counts.update(count_commands(self.env, batch, self.log(f"prepare-{batch[0]}")).by_host)
        if first_counts:
            per_host = [entry["exec"] for entry in first_counts.values()]
            self.rows.append(
                Row("remote commands per host, first deploy", per_host, "commands",
                    note=f"{len(per_host)} hosts, counted at the SSH layer", extra={"sftp": _sftp(first_counts)})
            )  # fmt: skip
            self.raw["first_deploy_commands"] = next(iter(first_counts.values()))["commands"]

    def peer_setup(self) -> None:
        """an1..anN booted fresh and configured by the Ansible peer; the project's deploy must find nothing to do."""
        names = self.peer_names(self.plan.peer_hosts)
        self.raw["ansible_core"] = peer.ensure_ansible()
        say(f"Ansible peer: ansible-core {self.raw['ansible_core']}; booting {names[0]}..{names[-1]}, first run")
        self.hosts.fresh(names)
        self.ansible.add_hosts(self.ansible_passwords)
        first = self.ansible.run(names, self.log("peer-first"))
        self.rows.append(
            Row(f"Ansible peer: first run, {len(names)} fresh host(s) at once", [first.seconds], "s",
                note="preparation of the peer's hosts, once")
        )  # fmt: skip
        say("the project's deploy on the peer's hosts: it must find nothing to change (the same job)")
        check = deploy(self.env, names, self.log("peer-same-job"))
        if "] Success" in check.log.read_text(errors="replace"):
            raise BenchError(f"the deploy changed a host that the Ansible peer had configured: see {check.log}")

    def floors(self) -> None:
        runs = self.plan.floor_runs
        say(f"floors: one SSH command, {runs} runs each")
        host = labkit.lab_host("bn1")
        fresh = [timed_ssh(["ssh", *hosts.ssh_options()], host.address, HASH_AND_STATE) for _ in range(runs)]
        with SshMaster(host, self.logs / "bn1.ssh") as master:
            master.run("true")
            open_connection = []
            for _ in range(runs):
                start = time.perf_counter()
                master.run(HASH_AND_STATE)
                open_connection.append(time.perf_counter() - start)
        self.rows += [
            Row("floor: one SSH command, hash the files + service state, open connection", open_connection, "s",
                note="OpenSSH ControlMaster"),
            Row("floor: the same, new SSH connection", fresh, "s"),
        ]  # fmt: skip

    def redeploys(self) -> None:
        sizes, runs = self.plan.sizes, self.plan.runs
        times: dict[int, list[float]] = {n: [] for n in sizes}
        floors: dict[int, list[float]] = {n: [] for n in sizes}
        rss: dict[int, list[float]] = {n: [] for n in sizes}
        peer_times: dict[int, list[float]] = {n: [] for n in self.plan.peer_sizes}
        configured: list[float] = []  # 1 host, the keyring backend named by the user
        addresses = [labkit.lab_host(name).address for name in self.names(sizes[-1])]
        versions = []
        for run in range(runs):  # sizes and floor interleaved, so that a noisy minute hits all of them alike
            versions += [run_timed([str(PYINFRA), "--version"], self.log("version")).seconds for _ in range(2)]
            if run % 2:  # the peer before the project in every other run: no order bias in the ratio
                self.peer_reruns(run, peer_times)
            for n in sizes:
                say(f"no-change re-deploy of {n} host(s), run {run + 1}/{runs}")
                timed: Timed = deploy(self.env, self.names(n), self.log(f"redeploy{n}-{run}"))
                if "] Success" in timed.log.read_text(errors="replace"):  # every host must say "No changes"
                    raise BenchError(f"a no-change re-deploy changed something: see {timed.log}")
                times[n].append(timed.seconds)
                rss[n].append(timed.max_rss_mib)
                floors[n].append(parallel_floor(addresses[:n], HASH_AND_STATE))
                if n == 1:
                    log = self.log(f"redeploy1-configured-keyring-{run}")
                    configured.append(deploy(self.env, self.names(1), log, SECRET_SERVICE_BACKEND).seconds)
            if not run % 2:
                self.peer_reruns(run, peer_times)
        counts = {}
        for n in sizes:
            say(f"counting the remote commands of a no-change re-deploy of {n} host(s)")
            counted = count_commands(self.env, self.names(n), self.log(f"count{n}"))
            counts[n] = counted.by_host
            if n in (1, sizes[-1]):
                self.timeline_rows(n, counted)
        self.raw["redeploy_commands"] = counts[1]["bn1"]["commands"]

        self.rows.append(Row("floor: `pyinfra --version`", versions, "s", note="2 before each round of re-deploys"))
        version = median(versions)
        one = median(times[1])
        largest = sizes[-1]
        for n in sizes:
            label = f"floor: the hash + service state command on {n} host(s) at once, new connections"
            note = "one process, paramiko + gevent as in pyinfra, without its start (bench/parallel_floor.py)"
            self.rows.append(Row(label, floors[n], "s", note=note))
        for n in sizes:
            row = Row(f"no-change re-deploy, {n} host{'s' if n > 1 else ''}", times[n], "s")
            if n == 1:
                row.goal, row.met = f"<= 1.5 x pyinfra --version = {1.5 * version:.2f} s", one <= 1.5 * version
                row.note = "keyring chooses its backend, as for a user who has not chosen one"
            elif n == largest:
                row.goal, row.met = f"< 3 x 1 host = {3 * one:.2f} s", median(times[n]) < 3 * one
            self.rows.append(row)
            if n == 1:
                self.rows.append(
                    Row("no-change re-deploy, 1 host, keyring backend named by the user", configured, "s",
                        goal=f"<= 1.5 x pyinfra --version = {1.5 * version:.2f} s",
                        met=median(configured) <= 1.5 * version,
                        note=f"PYTHON_KEYRING_BACKEND={SECRET_SERVICE_BACKEND}; alternating with the line above")
                )  # fmt: skip
        for n, samples in peer_times.items():
            self.rows.append(
                Row(f"Ansible peer: no-change rerun, {n} host{'s' if n > 1 else ''}", samples, "s",
                    note="ansible-playbook bench/ansible/nullclient.yml; alternating with the project's runs")
            )  # fmt: skip
        ratios = [ours / theirs for ours, theirs in zip(times[1], peer_times[1], strict=True)]
        self.rows.append(
            Row("ratio: no-change re-deploy / Ansible peer, 1 host", ratios, "x", goal="<= 0.10",
                met=median(ratios) <= 0.10, note="per run, the two measured side by side")
        )  # fmt: skip
        self.figure = [
            ("no-change re-deploy (this project)", [(n, median(times[n])) for n in sizes]),
            ("parallel SSH floor (bench/parallel_floor.py)", [(n, median(floors[n])) for n in sizes]),
            ("Ansible peer, no-change rerun", [(n, median(s)) for n, s in peer_times.items()]),
        ]
        for n in sizes:
            per_host = [entry["exec"] for entry in counts[n].values()]
            note = f"{len(per_host)} host(s), counted at the SSH layer"
            row = Row(f"remote commands per host, no-change re-deploy of {n}", per_host, "commands", note=note)
            row.extra["sftp"] = _sftp(counts[n])
            if n == 1:
                row.goal, row.met = "<= 12", max(per_host) <= 12
            self.rows.append(row)
        for n in (1, largest):
            self.rows.append(Row(f"peak RSS of pyinfra, no-change re-deploy of {n}", rss[n], "MiB"))

    def peer_reruns(self, run: int, peer_times: dict[int, list[float]]) -> None:
        """The Ansible peer's no-change rerun on an1..anN for each of its sizes; it must change nothing."""
        for n in peer_times:
            say(f"Ansible peer: no-change rerun of {n} host(s), run {run + 1}/{self.plan.runs}")
            timed = self.ansible.run(self.peer_names(n), self.log(f"peer{n}-{run}"))
            if peer.changed_tasks(timed.log):
                raise BenchError(f"a no-change rerun of the Ansible peer changed something: see {timed.log}")
            peer_times[n].append(timed.seconds)

    def timeline_rows(self, n: int, counted: Counted) -> None:
        """Where the counted no-change run of `n` hosts spent its time (one run: a breakdown, not a median)."""
        t = counted.timeline
        parts = [
            ("python start, imports and exit", t["imports_done"] + counted.seconds - t["end"]),
            ("config and inventory, until the first SSH connect", t["connect_first_start"] - t["imports_done"]),
            ("connecting (first connect start to last connect end)", t["connect_last_end"] - t["connect_first_start"]),
            ("deploy.py until the first remote command (settings, keyring)", t["exec_first"] - t["connect_last_end"]),
            (f"  of which reading the keyring, {t['keyring_entries']} entries", t["keyring_s"]),
            ("remote commands (first start to last start)", t["exec_last"] - t["exec_first"]),
            ("after the last remote command starts: its answer, results, disconnect", t["end"] - t["exec_last"]),
        ]  # fmt: skip
        for label, seconds in parts:
            self.diagnostic_rows.append(Row(f"no-change re-deploy of {n}: {label}", [seconds], "s"))
        self.raw[f"timeline_{n}"] = {**t, "wall_s": counted.seconds}

    def mail_latency(self) -> None:
        """sendmail on bn1 to arrival at our relay, one mail at a time; both clocks are the same kernel's."""
        count = self.plan.mails
        say(f"mail latency: {count} mails from bn1 to bn-relay, one at a time")
        tag = f"bench-latency-{os.getpid()}-{time.time_ns()}"
        latencies = []
        with SshMaster(labkit.lab_host("bn1"), self.logs / "bn1-mail.ssh") as master:
            for k in range(count):
                subject = f"{tag} {k}"
                sent = float(
                    master.run(
                        f"date +%s.%N; printf 'Subject: {subject}\\n\\nprobe\\n' | /usr/sbin/sendmail root"
                    ).stdout
                )
                message = _wait_for_subject(subject, timeout=60)
                latencies.append(message["received"] - sent)
        row = Row(f"mail latency, sendmail on a workstation → relay, {count} mails", latencies, "s", p95=True)
        row.goal, row.met = "median < 1 s", median(latencies) < 1
        self.rows.append(row)

    def network_back(self) -> None:
        """Mail deferred while the link is down, until it reaches the relay once the link is back: with the
        flush hook as deployed, and with its path unit stopped (Postfix's own retries only), alternating."""
        if LINK_HOST not in self.hosts.made:
            say(f"booting {LINK_HOST} for the network coming back")
            self.hosts.fresh([LINK_HOST])
        deploy(self.env, [LINK_HOST], self.log("network-back-deploy"))
        samples: dict[bool, list[float]] = {True: [], False: []}
        last_hooked = 0.0
        for run in range(NETWORK_BACK_RUNS):
            for hooked in (True, False) if run % 2 == 0 else (False, True):
                if hooked:  # the hook flushes at most once per FLUSH_INTERVAL: a run must not wait for that
                    time.sleep(max(0.0, last_hooked + FLUSH_INTERVAL + 1 - time.monotonic()))
                way = "with" if hooked else "without"
                say(f"network back, {way} the flush hook, run {run + 1}/{NETWORK_BACK_RUNS}")
                samples[hooked].append(self.link_back_seconds(hooked, f"{run}-{way}"))
                if hooked:
                    last_hooked = time.monotonic()
        note = f"the link of {LINK_HOST} down, a mail deferred, the link up: until the relay has it"
        self.rows += [
            Row("network back: deferred mail at the relay, flush hook as deployed", samples[True], "s",
                cap=NETWORK_BACK_CAP, note=note),
            Row(f"network back: the same, {FLUSH_PATH_NAME} stopped", samples[False], "s",
                cap=NETWORK_BACK_CAP, note=f"Postfix's own retries; waited at most {NETWORK_BACK_CAP:.0f} s"),
        ]  # fmt: skip

    def link_back_seconds(self, hooked: bool, tag: str) -> float:
        """One run: seconds from the link up until the relay has the mail; NETWORK_BACK_CAP if it had not by then.

        SSH goes over the link, so the mail is left to a unit on the host (systemd-run) that sends it
        once the host sees no carrier on its link, and the deferred queue is read from this machine, in
        the host's own file system.
        """
        subject = f"bench-network-back-{os.getpid()}-{tag}-{time.time_ns()}"
        offline_mail = (
            "until grep -qx 0 /sys/class/net/host0/carrier; do sleep 0.1; done; "
            f"printf 'Subject: {subject}\\n\\noffline\\n' | /usr/sbin/sendmail root"
        )
        hosts.ssh(
            LINK_HOST,
            f"systemctl {'start' if hooked else 'stop'} {FLUSH_PATH_NAME} && "
            f"systemd-run -q -p RuntimeMaxSec=60 /bin/sh -c {shlex.quote(offline_mail)}",
        )
        deferred = hosts.HOSTS_DIR / LINK_HOST / "root/var/spool/postfix/deferred"
        veth = f"vb-{LINK_HOST}"  # systemd-nspawn's name for the host's side of --network-bridge
        subprocess.run(["ip", "link", "set", veth, "down"], check=True)
        try:
            deadline = time.monotonic() + 60  # beyond Postfix's smtp_connect_timeout (30 s)
            while not any(path.is_file() for path in deferred.rglob("*")):
                if time.monotonic() > deadline:
                    at_relay = _find_subject(subject, 0.1) is not None
                    raise BenchError(
                        f"the mail written on {LINK_HOST} with its link down was not deferred within 60 s"
                        + (" (it reached the relay: the link was not down)" if at_relay else "")
                    )
                time.sleep(0.1)
            time.sleep(2)  # offline a little longer: Postfix's next try is minutes away now
        finally:
            subprocess.run(["ip", "link", "set", veth, "up"], check=True)
        back = time.time()
        message = _find_subject(subject, NETWORK_BACK_CAP)
        if message is None:  # flushed by hand, so that no mail is left behind for the next run
            hosts.ssh(LINK_HOST, "postqueue -f")
            _wait_for_subject(subject, timeout=60)
            return NETWORK_BACK_CAP
        return message["received"] - back

    def diagnostics(self) -> None:
        """Where the time of a deploy goes: the keyring, and each step of the apply command on a host."""
        say("diagnostics: keyring lookups, and the steps of the apply command on bn1")
        names = self.names(self.plan.max_hosts)
        # keyring.get_password entry by entry, then the deploy's way: all entries in one go.
        script = (
            "import sys, time, keyring\n"
            "from postfix_nullclient.keyring_lookup import read_passwords\n"
            "entries = [(sys.argv[1], user) for user in sys.argv[2:]]\n"
            "start = time.perf_counter()\n"
            "for entry in entries: assert keyring.get_password(*entry)\n"
            "middle = time.perf_counter()\n"
            "assert all(read_passwords(entries).values())\n"
            "print(middle - start, time.perf_counter() - middle)\n"
        )
        argv = [sys.executable, "-c", script, labkit.KEYRING_SERVICE, *map(labkit.smtp_user, names)]
        one_by_one, in_one_go = [], []
        for _ in range(3):
            out = subprocess.run(argv, cwd=PROJECT, env=self.env, capture_output=True, text=True, check=True).stdout
            first, second = map(float, out.split())
            one_by_one.append(first / len(names) * 1000)
            in_one_go.append(second / len(names) * 1000)
        self.diagnostic_rows += [
            Row(f"keyring: one password, keyring.get_password entry by entry ({len(names)} entries)", one_by_one,
                "ms", note="a new D-Bus connection and session per entry"),
            Row(f"keyring: one password, all {len(names)} read in one go (tasks/keyring_lookup.py)", in_one_go,
                "ms", note="what the deploy does, before the first command"),
        ]  # fmt: skip
        # keyring's choice of a backend, as the deploy pays it: pyinfra, keyring and the package are
        # imported already. Without a backend named, keyring loads every backend it knows; on Linux its
        # macOS backend looks for the Security framework through ctypes at import, which runs gcc and ld.
        script = (
            "import sys, time\n"
            "import keyring, postfix_nullclient.keyring_lookup as lookup\n"
            "start = time.perf_counter()\n"
            "if sys.argv[1] == 'deploy': lookup.choose_backend()\n"
            "keyring.get_keyring(); print(time.perf_counter() - start)\n"
        )
        samples: dict[tuple[str, str | None], list[float]] = {
            ("keyring", None): [], ("keyring", SECRET_SERVICE_BACKEND): [], ("deploy", None): [],
        }  # fmt: skip
        for _ in range(5):
            for (how, backend), found in samples.items():
                out = subprocess.run(
                    [sys.executable, "-c", script, how], cwd=PROJECT, env=deploy_env(self.env, [], backend),
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                found.append(float(out.stdout) * 1000)
        self.diagnostic_rows += [
            Row("keyring: choosing the backend (keyring.get_keyring()), no backend named: keyring looks at all",
                samples[("keyring", None)], "ms",
                note="every backend loaded: the macOS one runs gcc and ld 3 times (ctypes.util.find_library)"),
            Row("keyring: the same, the backend named by the user (PYTHON_KEYRING_BACKEND)",
                samples[("keyring", SECRET_SERVICE_BACKEND)], "ms", note="only SecretService loaded and checked"),
            Row("keyring: the same as the deploy does it, no backend named: choose_backend() first",
                samples[("deploy", None)], "ms", note="tasks/keyring_lookup.py: it can only be SecretService here"),
        ]  # fmt: skip
        steps: dict[str, list[float]] = {}
        for _ in range(3):
            out = hosts.ssh("bn1", APPLY_STEPS).stdout
            for line in out.splitlines():
                label, micros = line.rsplit(" ", 1)
                steps.setdefault(label, []).append(int(micros) / 1000)
        for label, samples in steps.items():
            self.diagnostic_rows.append(Row(f"on a host: `{label}`", samples, "ms"))

    def host_versions(self, name: str = "bn1") -> dict[str, str]:
        out = hosts.ssh(name, "cat /etc/debian_version; postconf -h mail_version").stdout.split()
        return {"debian": out[0], "postfix": out[1]}


def _find_subject(subject: str, timeout: float) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in smarthost.messages(STATE_DIR, labkit.RELAY_INSTANCE):
            if message.get("subject") == subject:
                return message
        time.sleep(0.02)
    return None


def _wait_for_subject(subject: str, timeout: float) -> dict:
    message = _find_subject(subject, timeout)
    if message is not None:
        return message
    raise BenchError(f"the mail {subject!r} did not reach bn-relay within {timeout:.0f} s")


def _sftp(counts: dict[str, dict]) -> int:
    return sum(entry["sftp"] for entry in counts.values())


# --- the report ------------------------------------------------------------------------------------------------


def machine() -> dict[str, object]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "kernel": " ".join(platform.uname()[i] for i in (0, 2, 4)),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "os": platform.freedesktop_os_release().get("PRETTY_NAME", "?"),
    }


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("pyinfra", "paramiko", "gevent", "keyring", "jinja2"):
        found[package] = importlib.metadata.version(package)
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    found["openssh (bench client)"] = ssh.split(",")[0]
    return found


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "?"
    return commit + (
        " + uncommitted changes" if git("status", "--porcelain", "--", "deploy.py", "tasks", "templates") else ""
    )


def _kind(plan: dict) -> str:
    if plan["only"]:
        return f"{plan['only']} alone"
    return "quick check" if plan["quick"] else "full run"


def report(info: dict, rows: list[Row], diagnostics: list[Row]) -> str:
    lines = [
        f"# Benchmark results ({_kind(info['plan'])})",
        "",
        f"- date: {info['date']} (took {info['duration_s'] / 60:.1f} min)",
        f"- machine: {info['machine']['cpu']}, {info['machine']['cores']} cores, "
        f"{info['machine']['memory_gib']} GiB, {info['machine']['os']}, {info['machine']['kernel']}",
        f"- load average before / after: {info['load_before']} / {info['load_after']} (other lab users run too)",
        f"- versions: {', '.join(f'{k} {v}' for k, v in info['versions'].items())}"
        + (f", ansible-core {info['ansible_core']} (the peer)" if info.get("ansible_core") else ""),
        f"- lab hosts: Debian {info.get('hosts', {}).get('debian', '?')}, "
        f"postfix {info.get('hosts', {}).get('postfix', '?')}",
        f"- deploy: commit {info['commit']}",
        "- command: `sudo .venv/bin/python -m bench"
        + (" --quick" if info["plan"]["quick"] else "")
        + (f" --only {info['plan']['only']}" if info["plan"]["only"] else "")
        + "`",
        "",
        "Medians of the runs; see bench/README.md for what each line measures.",
        "",
        markdown_table(rows),
    ]
    if diagnostics:
        lines += ["Where the time goes (diagnostics, same run):", "", markdown_table(diagnostics)]
    for key, title in (("redeploy_commands", "no-change re-deploy"), ("first_deploy_commands", "first deploy")):
        if info.get(key):
            lines += [f"Remote commands of one host's {title} (the start of each, on one line):", "", "```"]
            lines += info[key] + ["```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    plan = parse_args(argv)
    require_root()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a kill runs the same cleanup as Ctrl-C
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = RESULTS_DIR / stamp
    bench = Bench(plan, out)
    info: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "versions": versions(),
        "commit": git_commit(),
        "plan": {**plan.__dict__, "sizes": plan.sizes},
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    start = time.monotonic()
    try:
        bench.run()
    except BenchError as error:
        say(f"failed: {error}")
        return 1
    info["duration_s"] = time.monotonic() - start
    info["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    info.update(bench.raw)
    text = report(info, bench.rows, bench.diagnostic_rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(
        json.dumps(
            {
                **info,
                "rows": [r.as_json() for r in bench.rows],
                "diagnostics": [r.as_json() for r in bench.diagnostic_rows],
            },
            indent=1,
        )
    )
    names = ["results.md", "results.json"]
    if bench.figure:
        title = f"No-change runs against hosts ({'quick check' if plan.quick else 'full run'}, {info['date']})"
        (out / "scaling.svg").write_text(scaling_svg(bench.figure, title, log_y=True))
        names.append("scaling.svg")
    for name in names:
        shutil.copyfile(out / name, RESULTS_DIR / f"latest-{name}")
    full = not plan.quick and not plan.only
    if full:
        RESULTS_MD.write_text(text)
        if bench.figure:
            shutil.copyfile(out / "scaling.svg", SCALING_SVG)
    print(text)
    say(f"written: {out}/results.md, results.json, scaling.svg" + (f", {RESULTS_MD}, {SCALING_SVG}" if full else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
