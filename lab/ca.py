"""The lab's own certificate authority and the certificates it signs."""

import subprocess
from pathlib import Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def ensure_ca(directory: Path, name: str = "nullclient lab CA") -> Path:
    """Create a CA in `directory` unless one is there; return the path of its certificate."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert, key = directory / "ca.crt", directory / "ca.key"
    if not (cert.exists() and key.exists()):
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "3650",
            "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        key.chmod(0o600)
    return cert


def issue_certificate(ca_dir: Path, dns_name: str, out_dir: Path) -> tuple[Path, Path]:
    """Sign a server certificate for `dns_name`; return (certificate, key) paths in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert, key, csr = out_dir / f"{dns_name}.crt", out_dir / f"{dns_name}.key", out_dir / f"{dns_name}.csr"
    extensions = out_dir / f"{dns_name}.ext"
    extensions.write_text(
        f"subjectAltName=DNS:{dns_name}\nextendedKeyUsage=serverAuth\n"
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
    )
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={dns_name}",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_dir / "ca.crt"), "-CAkey", str(ca_dir / "ca.key"),
        "-CAcreateserial", "-out", str(cert), "-days", "825", "-extfile", str(extensions),
    )  # fmt: skip
    key.chmod(0o600)
    csr.unlink()
    extensions.unlink()
    return cert, key
