"""How the local cluster's login node lets users in: its sshd_config and PAM stack, the
users file of ``pam_oath`` and the TOTP codes, the password check, and the user CA's
certificates (trusted by the login node and the compute nodes).

The modes (``auth``):

* ``"publickey+totp"``: ``AuthenticationMethods publickey,keyboard-interactive``, the
  keyboard-interactive step asking for a TOTP code through PAM (Debian's ``pam_oath``,
  a users file with a random secret written by the cluster);
* ``"totp"``: keyboard-interactive (the TOTP code) alone;
* ``"password"``: ``PasswordAuthentication`` through PAM: ``pam_exec`` with
  ``expose_authtok`` runs a script of the cluster's that compares the password with a
  file the cluster wrote (``cluster.password``).  The system's password database is
  neither read nor changed (``pam_pwdfile`` is not in Debian; ``pam_userdb`` would need
  a Berkeley DB tool);
* ``"publickey"``: the cluster's key (or a certificate of its CA) alone.

sshd names its PAM service after its program name (``__progname``), so the login sshd
runs through a symlink ``sshdist-login-<id>`` to sshd (``<id>``: 8 random hex digits,
one per cluster) and its PAM stack is ``/etc/pam.d/sshdist-login-<id>``, written by
``up()`` and removed by ``down()``; ``/etc/pam.d/sshd`` is never touched.  One file per
cluster, not per mode: two clusters (a test's session cluster and one a test starts)
may run at once, each with its own users file.

**TOTP codes for tests.**  ``pam_oath`` (liboath 2.6.7) refuses a code whose time step is
not later than the last one accepted, so one code logs in once, and a code of an earlier
step is refused after a later one.  Its only relevant option is ``window=W``: codes of
the steps now-W..now+W are accepted (``digits=6``, 30 s steps, ``HOTP/T30``).  The
cluster sets ``window=totp_window`` (60 by default) and ``cluster.totp_code()`` hands
out the code of the next unused step: the current step first, then the following ones,
so W+1 fresh codes are available at once and one more every 30 s after that.  When the
window is used up, ``totp_code()`` calls ``reset_totp()``, which rewrites the users file
without pam_oath's record of the last code, and starts again from the current step.
Codes a test makes itself (``oathtool --totp <secret>``) count as used steps too: mixing
them with ``totp_code()`` can make the latter's next code a replay.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .clustertool import made_before, run

AUTH_MODES = ("publickey+totp", "totp", "password", "publickey")
TOTP_STEP = 30
PAM_DIR = Path("/etc/pam.d")
USERS_FILE = "users.oath"  # in the login node's directory, as the password files
PASSWORD_FILE = "password"
CHECK_PASSWORD = "check-password"

_CHECK_PASSWORD = """#!/bin/sh
# pam_exec expose_authtok: the password arrives on stdin, NUL-terminated; $1 holds the
# cluster's password.  Written by sshdist's LocalCluster.
pw=$(tr -d '\\000')
[ -n "$pw" ] && [ "$pw" = "$(cat "$1")" ]
"""


def pam_service(cluster_id: str) -> str:
    """The login sshd's program name, hence its PAM service."""
    return f"sshdist-login-{cluster_id}"


def remove_pam_files_but(kept: set[str] | None, older_than: float) -> None:
    """Remove the PAM files of clusters not in ``kept`` (ids) written over ``older_than``
    seconds ago: left by clusters gone without a ``down()``, not ones being started.
    None: which clusters remain is unknown (nft could not list them): remove none."""
    if kept is None:
        return
    for pam in PAM_DIR.glob(pam_service("*")):
        if pam.name.removeprefix(pam_service("")) not in kept and made_before(pam, older_than):
            try:
                pam.unlink()
            except OSError:  # gone meanwhile, or not root: not ours to remove
                pass


def pam_stack(auth: str, login: Path, window: int) -> str:
    header = "# sshdist local cluster: the login node's PAM service (removed by down())\n"
    if auth in ("publickey+totp", "totp"):
        first = f"auth required pam_oath.so usersfile={login / USERS_FILE} window={window} digits=6"
    elif auth == "password":
        first = (
            f"auth required pam_exec.so expose_authtok quiet "
            f"{login / CHECK_PASSWORD} {login / PASSWORD_FILE}"
        )
    else:
        first = "auth required pam_deny.so"
    return (
        header + first + "\n"
        "account required pam_permit.so\n"
        "session required pam_permit.so\n"
        "password required pam_deny.so\n"
    )


def login_sshd_config(auth: str, port: int, home: Path, authorized_keys: Path, ca_key: Path) -> str:
    """The login sshd's sshd_config: the methods of ``auth`` through PAM, at OpenSSH's
    default limits (no MaxStartups, MaxSessions, LoginGraceTime...)."""
    methods = {
        "publickey+totp": "publickey,keyboard-interactive",
        "totp": "keyboard-interactive",
        "password": "password",
        "publickey": "publickey",
    }[auth]
    yes_no = {True: "yes", False: "no"}
    runtime = home / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    return (
        f"Port {port}\n"
        "ListenAddress 127.0.0.1\n"
        f"HostKey {home / 'ssh_host_ed25519_key'}\n"
        f"PidFile {home / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {authorized_keys}\n"
        f"TrustedUserCAKeys {ca_key.with_suffix('.pub')}\n"
        f"PubkeyAuthentication {yes_no['publickey' in auth]}\n"
        f"KbdInteractiveAuthentication {yes_no['totp' in auth]}\n"
        f"PasswordAuthentication {yes_no[auth == 'password']}\n"
        f"AuthenticationMethods {methods}\n"
        "UsePAM yes\n"
        "PermitRootLogin yes\n"
        "StrictModes no\n"
        "AllowTcpForwarding yes\n"
        # As the local nodes' (see LocalNodes): no login user's interactive .bashrc
        # for ssh commands, one GC marker thread, a runtime directory of its own.
        f"SetEnv SHLVL=1 GC_MARKERS=1 XDG_RUNTIME_DIR={runtime}\n"
        "LogLevel VERBOSE\n"
    )


def sign_key(
    ca_key: Path,
    pubkey: Path,
    principals: Sequence[str],
    certificate: str | os.PathLike[str] | None,
    validity: str,
    scratch_dir: Path,
) -> Path:
    """Sign ``pubkey`` with the user CA ``ca_key``; write ``<key>-cert.pub`` beside it,
    or ``certificate`` if given.  Returns the certificate's path."""
    if certificate is None:
        stem = pubkey.name[: -len(".pub")] if pubkey.name.endswith(".pub") else pubkey.name
        certificate = pubkey.with_name(f"{stem}-cert.pub")
    certificate = Path(certificate)
    with tempfile.TemporaryDirectory(dir=scratch_dir) as scratch:
        copy = Path(scratch) / "key.pub"
        shutil.copyfile(pubkey, copy)
        run(
            ["ssh-keygen", "-q", "-s", str(ca_key), "-I", f"sshdist-{pubkey.name}"]
            + ["-n", ",".join(principals), "-V", validity, str(copy)],
            f"ssh-keygen could not sign {pubkey}",
        )
        shutil.copyfile(Path(scratch) / "key-cert.pub", certificate)
    return certificate


def write_auth_files(
    auth: str, login: Path, secret_file: Path, user: str, pam_file: Path, window: int
) -> None:
    """The TOTP secret and users file or the password and its check, and the PAM stack."""
    if "totp" in auth:
        _write_private(secret_file, secrets.token_hex(20) + "\n")
        write_users_file(login, user, secret_file.read_text().strip())
    if auth == "password":
        _write_private(login / PASSWORD_FILE, secrets.token_hex(12) + "\n")
        script = login / CHECK_PASSWORD
        script.write_text(_CHECK_PASSWORD)
        script.chmod(0o700)
    pam_file.write_text(pam_stack(auth, login, window))


def write_users_file(login: Path, user: str, secret: str) -> None:
    """Write pam_oath's users file fresh: without its record of the codes used so far."""
    # An atomic rename, without liboath's lock: Debian's liboath creates <file>.lock
    # exclusively and fails a login while that file exists, so it must not exist.
    users = login / USERS_FILE
    fresh = users.with_suffix(".fresh")
    fresh.write_text(f"HOTP/T30\t{user}\t-\t{secret}\n")
    fresh.chmod(0o600)
    fresh.replace(users)


def totp_code_at(secret: str, step: int) -> str:
    """The TOTP code of time step ``step`` (``TOTP_STEP`` seconds each)."""
    return run(
        ["oathtool", "--totp", "-d", "6", "-N", f"@{step * TOTP_STEP}", secret], "oathtool"
    ).strip()


def _write_private(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)
