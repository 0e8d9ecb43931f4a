"""``panopipe dev up``: moto's server logs a line per request on stderr, and none with ``-q``."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request

import pytest

pytest.importorskip("moto.server")


def dev_up(*global_options: str) -> tuple[list[str], str]:
    """Run ``panopipe [global_options] dev up`` until it has printed its exports, send it one request more,
    then stop it with Ctrl-C; what it printed on stdout (lines) and on stderr."""
    code = "import sys; from panopipe.cli import main; sys.exit(main(sys.argv[1:]))"
    server = subprocess.Popen(
        [sys.executable, "-c", code, *global_options, "dev", "up", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        printed = [server.stdout.readline()]
        while printed[-1] and not printed[-1].startswith("# then"):
            printed.append(server.stdout.readline())
        endpoint = next(line for line in printed if "ENDPOINT_URL=" in line).split("=", 1)[1].strip()
        urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=30).close()
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    return printed, err


def test_quiet_dev_up_logs_no_request():
    printed, err = dev_up("-q")

    assert printed[-1].startswith("# then") and "HTTP/1.1" not in err and err == ""


def test_dev_up_logs_each_request():
    _, err = dev_up()

    assert '"GET /moto-api/ HTTP/1.1" 200' in err
