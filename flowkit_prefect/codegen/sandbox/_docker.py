"""The Docker backend: one throwaway, network-less container per run (``DockerSandbox``).

Drives the docker CLI (``docker run --rm -i`` with the harness as ``python -c``), hands its pipes
to the shared supervisor, and removes the container by name whenever the run is cut short.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import uuid

from flowkit_prefect.blocks.sandboxes import DockerSandbox
from flowkit_prefect.codegen.sandbox._jobs import SandboxJob, harness_source, sandbox_env
from flowkit_prefect.codegen.sandbox._proc import NOBODY, has_exited
from flowkit_prefect.codegen.sandbox._report import build_report
from flowkit_prefect.codegen.sandbox._supervise import supervise
from flowkit_prefect.codegen.sandbox._types import SandboxReport
from flowkit_prefect.exceptions import SandboxError

__all__ = ["run_docker"]


def _docker_cli(sandbox: DockerSandbox) -> tuple[str, dict[str, str]]:
    """The docker CLI and the environment to run it with (``DOCKER_HOST`` from the block)."""
    docker = shutil.which("docker")
    if docker is None:
        raise SandboxError(
            "DockerSandbox needs the docker CLI on the worker's PATH: install it (Debian: "
            "`apt-get install docker.io` or `docker-ce-cli`), or use SubprocessSandbox."
        )
    env = dict(os.environ)  # for the CLI only; the container gets an explicit environment
    if sandbox.docker_host:
        env["DOCKER_HOST"] = sandbox.docker_host
    return docker, env


def _check_image(sandbox: DockerSandbox, docker: str, env: dict[str, str]) -> None:
    """``SandboxError`` unless the engine answers and has the image (it is never pulled)."""
    try:
        probe = subprocess.run(
            [docker, "image", "inspect", "--format", "{{.Id}}", sandbox.image],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"The docker CLI did not answer: {exc}") from exc
    if probe.returncode == 0:
        return
    message = (probe.stderr or probe.stdout).strip()
    where = sandbox.docker_host or env.get("DOCKER_HOST") or "the default socket"
    if "no such image" in message.lower():
        raise SandboxError(
            f"The image {sandbox.image!r} is not on the Docker engine at {where}; the sandbox "
            "never pulls. Build or load it there (an image with python3 on its PATH)."
        )
    raise SandboxError(
        f"Cannot use the Docker engine at {where}: {message}. Start the engine or set the "
        "block's docker_host."
    )


def _command(sandbox: DockerSandbox, docker: str, name: str) -> list[str]:
    """The ``docker run`` command line for one run in a container named ``name``."""
    cpu = int(sandbox.cpu_seconds + 0.999)
    file_size = sandbox.file_size_mb << 20
    memory = f"{sandbox.memory_mb + 64}m"
    container_env = sandbox_env("/sandbox")
    command = [
        docker,
        "run",
        "--rm",
        "-i",
        "--name",
        name,
        "--hostname",
        "sandbox",
        "--label",
        "flowkit.sandbox=1",
        "--pull",
        "never",
        "--network",
        "none",
        "--ipc",
        "none",
        "--read-only",
        "--tmpfs",
        f"/sandbox:rw,nosuid,nodev,size={sandbox.disk_mb}m,uid={NOBODY},gid={NOBODY},mode=0700",
        "--workdir",
        "/sandbox",
        "--user",
        f"{NOBODY}:{NOBODY}",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--memory",
        memory,
        "--memory-swap",
        memory,
        "--pids-limit",
        str(sandbox.max_processes + 1),
        "--cpus",
        f"{sandbox.cpus:g}",
        "--ulimit",
        f"cpu={cpu}:{cpu + 1}",
        "--ulimit",
        f"fsize={file_size}:{file_size}",
        "--ulimit",
        "core=0:0",
        "--log-driver",
        "none",
    ]
    for key, value in container_env.items():
        command += ["--env", f"{key}={value}"]
    return [*command, sandbox.image, sandbox.python, "-s", "-S", "-B", "-u", "-c", harness_source()]


def run_docker(
    sandbox: DockerSandbox, job: SandboxJob, cancel: threading.Event | None
) -> SandboxReport:
    """Run a checked job in a throwaway container (see ``DockerSandbox``)."""
    docker, env = _docker_cli(sandbox)
    _check_image(sandbox, docker, env)
    name = f"flowkit-sandbox-{uuid.uuid4().hex}"
    payload = job.payload(sandbox, workdir="/sandbox", drop=None, result_fd=None, unshare_net=False)
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        process = subprocess.Popen(
            _command(sandbox, docker, name),
            env=env,
            stdin=in_r,
            stdout=out_w,
            stderr=err_w,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
            os.close(fd)
        raise SandboxError(f"Cannot start the docker CLI {docker}: {exc}") from exc
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    finished = False

    def remove_container() -> None:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                [docker, "rm", "--force", name], env=env, capture_output=True, timeout=30
            )

    def kill() -> None:
        running = not finished and not has_exited(process.pid)
        # the CLI first: while it is attached and not read, `docker rm` would wait on it
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        if running:
            remove_container()

    try:
        run = supervise(
            sandbox,
            job,
            pid=process.pid,
            payload=payload,
            stdin_fd=in_w,
            streams={out_r: "stdout", err_r: "result"},
            kill=kill,
            cancel=cancel,
        )
        process.wait()
        finished = True
    finally:
        if not finished:
            remove_container()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    code = process.returncode
    if run.kill_reason is not None:
        remove_container()  # the CLI was killed: make sure the container is gone too
    # `docker run` reports a container killed by signal N as exit status 128 + N
    run.returncode = -(code - 128) if code is not None and code > 128 else code
    if code in (125, 126, 127) and run.first("ready") is None:
        text = run.noise.decode("utf-8", "replace").strip()
        raise SandboxError(f"`docker run` failed (exit {code}): {text}")
    notes = [
        f"docker container from {sandbox.image}",
        "no network",
        "read-only root, tmpfs folder",
        "capabilities dropped, no-new-privileges, uid 65534",
        "memory and pids limits",
    ]
    return build_report(sandbox, job, run, notes)
