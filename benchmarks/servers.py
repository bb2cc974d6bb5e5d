"""Private servers for the fault suite, never the machine's shared ones: a redis-server, a
PostgreSQL cluster (initdb) and a RabbitMQ node, each on free ports of 127.0.0.1 with its data
in a temporary directory of its own. Each can be killed (SIGKILL, its whole process group),
restarted (empty, for a broker), and is always stopped and its directory removed on leaving its
`with` block; each dies with the suite even if the suite is killed.

    with RedisServer() as redis:          # redis.url(3) -> "redis://127.0.0.1:<port>/3"
        redis.kill(); redis.start()       # killed, and back empty on the same port
    with PostgresServer() as postgres:    # postgres.url("renewly") -> "postgres://..."
        postgres.restart()                # a fast shutdown, as `pg_ctl restart -m fast`
    with RabbitNode() as rabbit:          # rabbit.url() -> "amqp://guest:guest@..."
        rabbit.kill(); rabbit.start()
"""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.processes import die_with_parent, kill_group

# RabbitMQ's own script, not the Debian wrapper in /usr/sbin (which switches to the rabbitmq
# user and the machine's node).
RABBITMQ_SERVER = os.environ.get("RABBITMQ_SERVER", "/usr/lib/rabbitmq/bin/rabbitmq-server")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(ready, *, what: str, timeout: float, process: subprocess.Popen, log: Path) -> float:
    """Poll `ready()` until it is true; return the seconds it took. Fails, with the log's
    end, if the process exits or the time runs out."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode}):\n{_tail(log)}")
        if ready():
            return time.monotonic() - started
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {timeout:.0f}s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 20) -> str:
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class PrivateServer:
    """What the three servers share: a directory, a process group, start/kill/stop."""

    name = "server"
    start_timeout = 30.0
    user: str | None = None  # run as this user (PostgreSQL refuses to run as root)

    def __init__(self):
        self.directory = Path(tempfile.mkdtemp(prefix=f"renewly-faults-{self.name}-"))
        self.log = self.directory / f"{self.name}.log"
        self.process: subprocess.Popen | None = None
        self.ready_seconds = 0.0  # how long the last start took

    # What each server says.
    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def is_ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> "PrivateServer":
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.directory,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=self.user,
                preexec_fn=die_with_parent(signal.SIGKILL),
            )
        self.ready_seconds = wait_until(
            self.is_ready,
            what=f"the private {self.name}",
            timeout=self.start_timeout,
            process=self.process,
            log=self.log,
        )
        return self

    def kill(self) -> None:
        """SIGKILL, the whole process group: nothing is flushed or closed cleanly."""
        if self.process is not None:
            kill_group(self.process)

    def stop(self) -> None:
        self.kill()

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc_info) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


class RedisServer(PrivateServer):
    """redis-server keeping nothing on disk: killed and started again, it comes back empty."""

    name = "redis"

    def __init__(self):
        super().__init__()
        self.port = free_port()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def command(self) -> list[str]:
        return [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
        ]

    def is_ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class PostgresServer(PrivateServer):
    """A PostgreSQL cluster of its own (initdb, trust authentication for user postgres),
    started as a child of the suite (so that it dies with it) from the newest server binaries
    under /usr/lib/postgresql (or PG_BIN)."""

    name = "postgres"

    def __init__(self):
        super().__init__()
        self.port = free_port()
        self.data = self.directory / "data"
        self.bin = Path(os.environ.get("PG_BIN") or _newest_postgres_bin())
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            self.user = "postgres"
            account = pwd.getpwnam(self.user)
            os.chown(self.directory, account.pw_uid, account.pw_gid)
        self._initdb()

    def _initdb(self) -> None:
        result = subprocess.run(
            [
                str(self.bin / "initdb"),
                "--pgdata",
                str(self.data),
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            user=self.user,
            cwd=self.directory,
        )
        if result.returncode:
            raise RuntimeError(f"initdb failed:\n{result.stdout}{result.stderr}")

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def command(self) -> list[str]:
        return [
            str(self.bin / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.directory}",
            "-c",
            "fsync=off",  # a test cluster: what is measured is the restart, not the disk
            "-c",
            "max_connections=100",
        ]

    def is_ready(self) -> bool:
        result = subprocess.run(
            [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            check=False,
        )
        return result.returncode == 0

    def stop(self, mode: signal.Signals = signal.SIGINT) -> None:
        """Shut down (SIGINT: `pg_ctl stop -m fast`, every session ended, the cluster shut
        down cleanly; SIGQUIT: `-m immediate`), then whatever is left of its group."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(mode)
        try:
            self.process.wait(timeout=30)
        finally:
            kill_group(self.process)

    def restart(self, mode: signal.Signals = signal.SIGINT) -> None:
        """As `pg_ctl restart -m fast` does: every session ends, the server comes back."""
        self.stop(mode)
        self.start()


def _newest_postgres_bin() -> str:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql: set PG_BIN")
    return str(Path(found[-1]).parent)


class RabbitNode(PrivateServer):
    """A RabbitMQ node of its own: its own node name, AMQP and distribution ports, Mnesia and
    log directories, Erlang cookie (its own HOME), no plugins, and none of the machine's
    /etc/rabbitmq configuration. Killed and started again, it comes back empty (its Mnesia
    directory removed): queues, messages and all."""

    name = "rabbitmq"
    start_timeout = 60.0

    def __init__(self):
        super().__init__()
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"renewly-faults-{self.port}@localhost"
        (self.directory / "home").mkdir()
        (self.directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
        )
        (self.directory / "enabled_plugins").write_text("[].\n")
        (self.directory / "rabbitmq-env.conf").write_text("")

    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def command(self) -> list[str]:
        return [RABBITMQ_SERVER]

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.directory / "home"),  # its own .erlang.cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.directory / "log"),
            "RABBITMQ_PID_FILE": str(self.directory / "rabbitmq.pid"),
            "RABBITMQ_CONFIG_FILE": str(self.directory / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(self.directory / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def is_ready(self) -> bool:
        """The AMQP handshake answers (the listener opens once the node has booted)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                connection.sendall(b"AMQP\x00\x00\x09\x01")
                return connection.recv(1) == b"\x01"  # a Connection.Start method frame
        except OSError:
            return False

    def start(self) -> "RabbitNode":
        shutil.rmtree(self.directory / "mnesia", ignore_errors=True)  # every start: empty
        return super().start()
