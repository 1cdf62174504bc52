"""Other distribution families through pyinfra's API: the exact commands and files per family.

The lab boots Debian only; these hosts are @fake hosts that answer the deploy's one fact the way
a fresh host of each family does (its /etc/os-release ID, ID_LIKE and service manager).
"""

import re

import pytest

from tests.conftest import run_pyinfra, store_password
from tests.test_deploy_fake import SERVICE, staged_files, stdin_of

FAMILIES = {
    # name: (fact lines, install command pattern, CA bundle, service command)
    "ubuntu": (
        ["os ubuntu 24.04 debian", "init systemd"],
        r"apt-get install -y .*postfix libsasl2-modules ca-certificates bsd-mailx",
        "/etc/ssl/certs/ca-certificates.crt",
        "systemctl restart postfix",
    ),
    "fedora": (
        ["os fedora 41", "init systemd"],
        r"dnf install -y postfix cyrus-sasl-plain ca-certificates s-nail",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "systemctl restart postfix",
    ),
    "rocky": (
        ["os rocky 9.4 rhel centos fedora", "init systemd"],
        r"dnf install -y postfix cyrus-sasl-plain ca-certificates s-nail",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "systemctl restart postfix",
    ),
    "arch": (
        ["os arch unknown", "init systemd"],
        r"pacman -Sy --noconfirm --needed postfix cyrus-sasl ca-certificates s-nail",
        "/etc/ssl/certs/ca-certificates.crt",
        "systemctl restart postfix",
    ),
    "alpine": (
        ["os alpine 3.20.3", "init openrc"],
        r"apk add --update-cache postfix cyrus-sasl-login ca-certificates s-nail",
        "/etc/ssl/certs/ca-certificates.crt",
        "rc-service postfix restart",
    ),
    "opensuse": (
        ["os opensuse-leap 15.6 suse opensuse", "init systemd"],
        r"zypper --non-interactive --gpg-auto-import-keys refresh && zypper --non-interactive --gpg-auto-import-keys "
        r"install -y postfix cyrus-sasl-plain ca-certificates mailx",
        "/etc/ssl/ca-bundle.pem",
        "systemctl restart postfix",
    ),
}


def inventory(tmp_path, name: str, answer: list[str]):
    data = {
        "forward_to": "alice@example.org",
        "fake_delay": 0,
        "fake_responses": {"default_database_type": [*answer, f"fqdn {name}.example.net", "ipv6 no"]},
    }
    path = tmp_path / "inventory.py"
    path.write_text(f"workstations = {[(f'@fake/{name}', data)]!r}\n")
    return path


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_gets_its_packages_ca_bundle_and_service_manager(keyring_env, tmp_path, family):
    answer, install, ca_file, restart = FAMILIES[family]
    store_password(keyring_env, SERVICE, f"{family}@example.net", "family-Pa55 word")

    run = run_pyinfra(keyring_env, tmp_path, inventory(tmp_path, family, answer), "-y")

    assert run.returncode == 0, run.output
    commands = run.commands[f"@fake/{family}"]
    lines = [c["command"] for c in commands]
    assert any(re.search(install, line) for line in lines), lines
    assert any("debconf-set-selections" in line for line in lines) == (family == "ubuntu")
    apply_stdin = stdin_of(commands, "sh -s")
    assert f"    {restart} || true\n" in apply_stdin, "the family's service manager restarts postfix"
    files = staged_files(apply_stdin)
    assert f"smtp_tls_CAfile = {ca_file}\n" in files["main.cf"]
    # The map type is the host's own default_database_type, wherever it runs.
    assert "smtp_sasl_password_maps = $default_database_type:/etc/postfix/sasl_passwd\n" in files["main.cf"]
    assert files["sasl_passwd"] == f"[mail.example.net]:587 {family}@example.net:family-Pa55 word\n"


@pytest.mark.parametrize(
    ("answer", "message", "cause"),
    [
        (
            ["os gentoo 2.15", "init openrc"],
            "unsupported distribution 'gentoo' 2.15 (ID_LIKE: -); "
            "supported families: debian, fedora, arch, alpine, suse",
            "distribution",
        ),
        (
            ["os debian 12", "init openrc"],
            "debian 12 runs openrc service manager, the deploy needs systemd",
            "init system",
        ),
    ],
)
def test_an_unsupported_host_is_refused_before_any_change(keyring_env, tmp_path, answer, message, cause):
    store_password(keyring_env, SERVICE, "odd@example.net", "odd-Pa55 word")

    run = run_pyinfra(keyring_env, tmp_path, inventory(tmp_path, "odd", answer), "-y")

    assert run.returncode != 0
    assert f"@fake/odd: refused, nothing was run on it: {message}; no change was made" in run.output
    assert f"Postfix null client | Refuse: {cause}" in run.output, "labelled by its cause"
    assert "Traceback" not in run.output
    assert len(run.commands["@fake/odd"]) == 1, "only the fact ran"
