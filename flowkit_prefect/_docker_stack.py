"""The Docker work pool stack behind ``make docker-run``: a Docker engine of our own, the images
built locally, a Docker worker in the background.

Everything runs without a Docker registry: the base image is a debootstrap of Debian bookworm
imported with ``docker import``; the flowkit image is ``deployments/docker/Dockerfile`` built by
``prefect deploy`` (``prefect_docker.deployments.steps.build_docker_image`` in prefect.yaml) from
a context this module assembles (a host-built wheelhouse, so nothing compiles in the build).

State lives under ``<project>/.flowkit/docker`` (socket, PID files, logs, the build context, the
data folder mounted at ``/data`` in the containers); what is slow to make (the base root
filesystem, the wheelhouse) is cached under ``~/.cache/flowkit-prefect/docker``. Every process
started here is stopped by its recorded PID.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from flowkit_prefect import _stack
from flowkit_prefect.exceptions import ConfigurationError

POOL = "flowkit-docker"
BASE_IMAGE = "flowkit-base:bookworm"
BASE_PACKAGES = "python3,python3-venv,python3-pip,ca-certificates,libgomp1"
# Wheels the image's Python needs but the host's may not: markers differ between interpreters
# (bookworm's python3 is 3.11.2; redis wants async-timeout below 3.11.3).
BASE_PYTHON_EXTRAS = ("async-timeout>=4.0.3",)
PORTABLE_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"


class EngineUnavailableError(ConfigurationError):
    """No Docker engine runs here and none could be installed."""


@dataclass(frozen=True)
class DockerStack:
    """Paths of a Docker stack: ``state_dir`` is ours alone, ``cache_dir`` may be shared."""

    state_dir: Path
    cache_dir: Path
    data_root: Path | None = None  # dockerd's images and containers; default: under state_dir

    @property
    def socket(self) -> Path:
        return self.state_dir / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def engine_root(self) -> Path:
        return self.data_root or self.state_dir / "engine"

    @property
    def dockerd_pid_file(self) -> Path:
        return self.state_dir / "pids" / "dockerd.pid"

    @property
    def worker_pid_file(self) -> Path:
        return self.state_dir / "pids" / "docker-worker.pid"

    @property
    def context_dir(self) -> Path:
        return self.state_dir / "context"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"  # mounted at /data in every flow-run container

    def log_file(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def env(self) -> dict[str, str]:
        """What prefect.yaml's docker deployments and the Docker clients read."""
        return {"DOCKER_HOST": self.docker_host, "FLOWKIT_DOCKER_DIR": str(self.state_dir)}


def default_stack(project: Path) -> DockerStack:
    from flowkit_prefect.settings import get_settings

    return DockerStack(project / ".flowkit" / "docker", get_settings().model_cache_dir() / "docker")


def _run(
    args: list[str], what: str, timeout: float = 900, log: Path | None = None, **kwargs
) -> str:
    """Run a command; its output, or a ConfigurationError with its last lines. With ``log`` the
    output goes to that file as it comes (``tail -f`` it during an image build)."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log or os.devnull, "wb") as sink:
            streams = {"stdout": sink, "stderr": subprocess.STDOUT} if log else {}
            done = subprocess.run(
                args,
                capture_output=log is None,
                timeout=timeout,
                check=False,
                **streams,
                **kwargs,
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigurationError(f"{what} failed: {exc}") from exc
    if log is not None:
        out = log.read_text(errors="replace")
    else:
        out = (done.stdout + done.stderr).decode(errors="replace")
    if done.returncode != 0:
        raise ConfigurationError(f"{what} failed (exit {done.returncode}):\n{_stack._tail(out)}")
    return out


def _docker(stack: DockerStack, *args: str, timeout: float = 600, **kwargs) -> str:
    return _run(["docker", "-H", stack.docker_host, *args], f"docker {args[0]}", timeout, **kwargs)


def _apt_install(*packages: str) -> None:
    if shutil.which("apt-get") is None:
        raise EngineUnavailableError(
            f"{', '.join(packages)} missing and no apt-get here: install Docker yourself."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        _run(["apt-get", "install", "-y", "--no-install-recommends", *packages], "apt", env=env)
    except ConfigurationError:
        try:  # an outdated package list is the usual cause
            _run(["apt-get", "update"], "apt-get update", env=env)
            _run(["apt-get", "install", "-y", "--no-install-recommends", *packages], "apt", env=env)
        except ConfigurationError as exc:
            raise EngineUnavailableError(f"Could not install {', '.join(packages)}: {exc}") from exc


def ensure_engine_installed() -> str:
    """``dockerd`` and the ``docker`` client on PATH (apt's docker.io when missing)."""
    if shutil.which("dockerd") and shutil.which("docker"):
        return "Docker engine installed"
    _apt_install("docker.io")
    if not shutil.which("dockerd"):
        raise EngineUnavailableError("apt installed docker.io but dockerd is not on PATH.")
    return "Installed docker.io with apt"


def _dockerd_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return b"dockerd" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _engine_answers(stack: DockerStack) -> bool:
    try:
        _docker(stack, "version", "--format", "{{.Server.Version}}", timeout=10)
    except ConfigurationError:
        return False
    return True


def _pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def start_engine(stack: DockerStack, timeout: float = 60.0) -> str:
    """Our own dockerd: no bridge, no iptables, its own data root, exec root and socket."""
    pid = _pid(stack.dockerd_pid_file)
    if pid and _dockerd_alive(pid) and _engine_answers(stack):
        return f"Docker engine already running (pid {pid}) at {stack.docker_host}"
    ensure_engine_installed()
    for folder in (stack.engine_root, stack.state_dir / "exec", stack.dockerd_pid_file.parent):
        folder.mkdir(parents=True, exist_ok=True)
    stack.socket.unlink(missing_ok=True)
    log_file = stack.log_file("dockerd")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    args = [
        "dockerd",
        "--data-root",
        str(stack.engine_root),
        "--exec-root",
        str(stack.state_dir / "exec"),
        "--pidfile",
        str(stack.state_dir / "exec" / "dockerd.pid"),
        "-H",
        stack.docker_host,
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
    ]
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    stack.dockerd_pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if stack.socket.exists() and _engine_answers(stack):
            return f"Started dockerd (pid {proc.pid}) at {stack.docker_host}; log: {log_file}"
        time.sleep(0.3)
    stop_engine(stack)
    raise EngineUnavailableError(
        f"dockerd did not start. Last lines of {log_file}:\n"
        + _stack._tail(log_file.read_text(errors="replace"))
    )


def _stop_pid(pid: int, alive, timeout: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)  # its own session: its children (containerd, flow runs) too
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not alive(pid):
            return


def remove_flow_run_containers(stack: DockerStack) -> int:
    """Remove the containers the Docker worker created (they carry Prefect's flow-run label)."""
    if not _engine_answers(stack):
        return 0
    ids = _docker(stack, "ps", "-aq", "--filter", "label=io.prefect.flow-run-id").split()
    if ids:
        _docker(stack, "rm", "-f", *ids)
    return len(ids)


def stop_engine(stack: DockerStack, timeout: float = 20.0) -> str:
    pid = _pid(stack.dockerd_pid_file)
    if pid is None or not _dockerd_alive(pid):
        stack.dockerd_pid_file.unlink(missing_ok=True)
        return "dockerd: not running"
    _stop_pid(pid, _dockerd_alive, timeout)
    stack.dockerd_pid_file.unlink(missing_ok=True)
    _unmount_under(stack.state_dir / "exec")
    return f"dockerd: stopped (pid {pid})"


def _unmount_under(folder: Path) -> None:
    """dockerd leaves its network namespace mounted in the exec root (``netns/default``)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return
    prefix = str(folder.resolve()) + "/"
    for line in mounts:
        point = line.split()[1] if len(line.split()) > 1 else ""
        if point.startswith(prefix):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def ensure_base_image(stack: DockerStack, image: str = BASE_IMAGE) -> str:
    """``image`` in the engine: a debootstrap of bookworm (cached as a tar), ``docker import``ed."""
    with contextlib.suppress(ConfigurationError):
        _docker(stack, "image", "inspect", image, timeout=20)
        return f"Base image {image} present"
    tarball = stack.cache_dir / "base-bookworm.tar"
    made = ""
    if not tarball.exists():
        if shutil.which("debootstrap") is None:
            _apt_install("debootstrap")
        stack.cache_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=stack.cache_dir, prefix="rootfs-") as rootfs:
            _run(
                ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm",
                 rootfs],
                "debootstrap",
            )  # fmt: skip
            partial = tarball.with_suffix(".part")
            _run(["tar", "-C", rootfs, "-cf", str(partial), "."], "tar of the root filesystem")
            partial.replace(tarball)
        made = f"debootstrap {time.monotonic() - started:.0f} s, "
    with open(tarball, "rb") as source:
        _docker(stack, "import", "-", image, stdin=source)
    return f"Built base image {image} ({made}from {tarball})"


def _wheel_source(project: Path, into: Path) -> Path:
    """A copy of what the package's wheel is built from (no build/ or egg-info in the repo)."""
    source = into / "src"
    shutil.copytree(
        project / "flowkit_prefect",
        source / "flowkit_prefect",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(project / name, source / name)
    return source


def ensure_wheelhouse(stack: DockerStack, project: Path, extras: str = "local") -> Path:
    """Wheels of ``.[extras]``'s dependencies, built on the host (pip's cache holds the portable
    llama.cpp wheel: nothing compiles), cached per pyproject.toml; returns the folder."""
    digest = hashlib.sha256(
        (project / "pyproject.toml").read_bytes()
        + extras.encode()
        + str(BASE_PYTHON_EXTRAS).encode()
    )
    deps = stack.cache_dir / "wheelhouse" / digest.hexdigest()[:16]
    if (deps / ".complete").exists():
        return deps
    env = {**os.environ, "CMAKE_ARGS": PORTABLE_CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": "2"}
    with tempfile.TemporaryDirectory(prefix="flowkit-wheel-") as temp:
        source = _wheel_source(project, Path(temp))
        partial = deps.with_name(deps.name + ".part")
        shutil.rmtree(partial, ignore_errors=True)
        pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "-w", str(partial)]
        _run(
            [*pip, f"{source}[{extras}]", *BASE_PYTHON_EXTRAS], "pip wheel (dependencies)", env=env
        )
    for own in partial.glob("flowkit_prefect-*.whl"):
        own.unlink()  # the package itself is rebuilt for every image
    (partial / ".complete").write_text("")
    shutil.rmtree(deps, ignore_errors=True)
    partial.replace(deps)
    for stale in deps.parent.iterdir():  # wheelhouses of earlier pyproject.toml versions
        if stale != deps and not stale.name.endswith(".part"):
            shutil.rmtree(stale, ignore_errors=True)
    return deps


def assemble_context(stack: DockerStack, project: Path) -> Path:
    """The build context prefect.yaml's build step sends: Dockerfile, wheelhouse/deps (hard
    links into the cache), wheelhouse/project (this source tree's wheel), deployments/."""
    deps = ensure_wheelhouse(stack, project)
    context = stack.context_dir
    shutil.rmtree(context, ignore_errors=True)
    (context / "wheelhouse" / "project").mkdir(parents=True)
    shutil.copytree(deps, context / "wheelhouse" / "deps", copy_function=_link_or_copy)
    with tempfile.TemporaryDirectory(prefix="flowkit-wheel-") as temp:
        source = _wheel_source(project, Path(temp))
        _run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w",
             str(context / "wheelhouse" / "project"), str(source)],
            "pip wheel (flowkit-prefect)",
        )  # fmt: skip
    shutil.copytree(
        project / "deployments",
        context / "deployments",
        ignore=shutil.ignore_patterns("docker", "__pycache__"),
    )
    shutil.copy2(project / "deployments" / "docker" / "Dockerfile", context / "Dockerfile")
    return context


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def prepare_data(stack: DockerStack) -> Path:
    """The host folder mounted at /data: the embedded Qdrant folder and outputs live there."""
    stack.data_dir.mkdir(parents=True, exist_ok=True)
    return stack.data_dir


def start_docker_worker(
    stack: DockerStack, prefect_stack: _stack.Stack, api_url: str, pool: str = POOL
) -> str:
    """``prefect worker start --type docker`` in the background, its PID in the state folder."""
    pid = _stack._running_pid(stack.worker_pid_file)
    if pid:
        return f"Docker worker already running (pid {pid}) on pool {pool!r}"
    stack.worker_pid_file.parent.mkdir(parents=True, exist_ok=True)
    log_file = stack.log_file("docker-worker")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **prefect_stack.env(), **stack.env(), "PREFECT_API_URL": api_url}
    env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "2")
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            [_stack.PREFECT, "worker", "start", "--pool", pool, "--type", "docker"],
            cwd=prefect_stack.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack.worker_pid_file.write_text(str(proc.pid))
    return f"Started Docker worker (pid {proc.pid}) on pool {pool!r}; log: {log_file}"


def stop_docker_worker(stack: DockerStack, timeout: float = 20.0) -> str:
    pid = _stack._running_pid(stack.worker_pid_file)
    stack_pid_file = stack.worker_pid_file
    if pid is None:
        stack_pid_file.unlink(missing_ok=True)
        return "docker worker: not running"
    _stop_pid(pid, _stack._alive, timeout)
    stack_pid_file.unlink(missing_ok=True)
    return f"docker worker: stopped (pid {pid})"


def _prefect_checked(
    prefect_stack: _stack.Stack, env: dict[str, str], project: Path, *args: str, log=None
) -> str:
    """``prefect *args`` in the project folder (its prefect.yaml) against ``prefect_stack``."""
    full = {**os.environ, **prefect_stack.env(), **env}
    return _run([_stack.PREFECT, *args], f"prefect {args[-1]}", cwd=project, env=full, log=log)


def up(
    stack: DockerStack,
    prefect_stack: _stack.Stack,
    api_url: str,
    project: Path,
    say=print,
) -> None:
    """Engine, base image, build context, blocks, pool, docker deployments, Docker worker."""
    env = {**stack.env(), "PREFECT_API_URL": api_url}
    started = time.monotonic()
    say(start_engine(stack))
    say(ensure_base_image(stack))
    say(f"Build context with the wheelhouse: {assemble_context(stack, project)}")
    say(f"Data folder (mounted at /data): {prepare_data(stack)}")
    _prefect_checked(prefect_stack, env, project, "--no-prompt", "block", "register", "-m",
                     "flowkit_prefect.blocks")  # fmt: skip
    flowkit = str(Path(sys.executable).with_name("flowkit"))
    full = {**os.environ, **prefect_stack.env(), **env}
    saved = _run(
        [flowkit, "blocks", "save", "blocks"], "flowkit blocks save", cwd=project, env=full
    )
    say(f"Saved {saved.count('Saved block')} block documents")
    try:
        _prefect_checked(prefect_stack, env, project, "work-pool", "inspect", POOL)
        say(f"Work pool {POOL} exists")
    except ConfigurationError:
        _prefect_checked(prefect_stack, env, project, "--no-prompt", "work-pool", "create",
                         POOL, "--type", "docker")  # fmt: skip
        say(f"Created Docker work pool {POOL}")
    build = time.monotonic()
    log_file = stack.log_file("deploy")
    say(f"Deploying; the build step builds the image (first time: minutes; log: {log_file})")
    deploy = ("--no-prompt", "deploy", "--name", "docker")
    _prefect_checked(prefect_stack, env, project, *deploy, log=log_file)
    say(
        f"Built the image and deployed the docker deployments in {time.monotonic() - build:.0f} s"
        f" (log: {log_file})"
    )
    # A rebuild moves the tag to the new image and leaves the old one dangling: drop those, or
    # the engine's image store (cached across runs) grows by an image per build.
    pruned = _docker(stack, "image", "prune", "--force", timeout=120).strip().splitlines()
    say(pruned[-1] if pruned else "No dangling images")
    say(start_docker_worker(stack, prefect_stack, api_url))
    say(f"Docker stack ready in {time.monotonic() - started:.0f} s")


def down(stack: DockerStack) -> list[str]:
    """Stop the Docker worker, remove its containers, stop our dockerd (each by its PID)."""
    said = [stop_docker_worker(stack)]
    pid = _pid(stack.dockerd_pid_file)
    if pid and _dockerd_alive(pid):
        with contextlib.suppress(ConfigurationError):
            removed = remove_flow_run_containers(stack)
            said.append(f"removed {removed} flow-run containers")
    said.append(stop_engine(stack))
    return said
