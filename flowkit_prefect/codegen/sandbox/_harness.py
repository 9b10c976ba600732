"""The test harness that runs INSIDE the sandbox process. Standard library only, Python 3.9+.

Why one file, standard library only: the worker never imports this module. The backends ship
its *source text* into the sandbox -- ``_jobs.harness_source()`` reads it; the subprocess
backend writes it into the sandbox folder, the Docker backend passes it to ``python -c`` in an
image that has nothing but ``python3`` -- and run it with ``python -s -S``, so the generated code
sees the standard library and nothing else (no site-packages, no user site, no script folder on
``sys.path``). A second module or a third-party import would not be there to import; any split
or dependency breaks every sandbox run. Keep it 3.9-compatible too: the container's ``python3``
may be older than the worker's.

Not ``-I``: that implies ``-E``, which would ignore the ``PYTHONHASHSEED=0`` the parent sets for
repeatable runs; the environment is built from scratch by the parent, so ``-E`` would add
nothing.

Order of work, all before a single line of candidate code runs:

1. read the job (JSON) from stdin to EOF, then point stdin at ``/dev/null``;
2. isolate: a new network namespace (``unshare``; as root ``CLONE_NEWNET``, otherwise
   ``CLONE_NEWUSER | CLONE_NEWNET``), ``PR_SET_NO_NEW_PRIVS``, resource limits (CPU, address
   space, file size, open files, processes, no core dumps), and as root a switch to an
   unprivileged uid/gid;
3. forget ``ctypes`` and install an audit hook (``sys.addaudithook``) that denies network
   access, new processes, native-code loading, signals to other processes, writes outside the
   sandbox folder, and reads outside an allowlist (the stdlib, ``/usr/share``, a few ``/etc``
   files, the process's own ``/proc`` entries) -- so ``/proc/<worker>/environ`` is refused;
4. run the optional setup, compile and execute the candidate module (``__name__`` is
   ``"solution"`` so ``if __name__ == "__main__":`` demo blocks stay quiet), then run each test
   in a copy of the module namespace with a per-test ``SIGALRM`` timer. Bare ``assert a == b``
   statements in tests are rewritten to report both sides ("add(1, 2) returned 4").

Results go to the parent as JSON lines on a private pipe (an inherited file descriptor; in Docker
the container's stderr, with the code's stderr merged into stdout), each line tagged with a
random nonce. The code's own prints go to stdout/stderr, which the parent drains with a size cap.

What this does NOT protect against: the candidate runs in the same interpreter as the harness.
A deliberately malicious candidate can find the nonce and the result descriptor by
introspection (``gc``, frames, closures, ``/proc/self/fd``), patch the harness's functions,
replace the ``SIGALRM`` handler or write forged "passed" lines -- i.e. it can lie about its own
test results. The sandbox contains what the code can *do* to the machine (enforced by the
kernel: namespaces, uid, rlimits, and the parent's wall clock and process-group kill); the audit
hook is a second, in-process layer that stops ordinary and accidental escapes but is not a
security boundary on its own against native-code tricks. Treat a pass from adversarial code as
"the code claims to pass"; re-run tests in a separate process from the candidate if that
matters.
"""

import _thread
import ast
import builtins
import contextlib
import errno
import json
import os
import signal
import sys
import time
import types

_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
_MAX_TEXT = 600

# Modules the candidate may not import: native-code access, process spawning helpers, raw
# shared memory, unix-socket logging, subinterpreters (which would not carry the audit hook).
_DENIED_MODULES = frozenset(
    {
        "ctypes",
        "_ctypes",
        "_posixsubprocess",
        "_posixshmem",
        "_multiprocessing",
        "syslog",
        "_xxsubinterpreters",
        "_xxinterpchannels",
        "_interpreters",
        "_interpchannels",
        "_interpqueues",
        # re-importing these would restore the functions _strip() removes
        "posix",
        "_signal",
    }
)
# Functions with no audit event that reach other processes of the same uid (a non-root worker
# shares its uid with the sandbox): signal via pidfd, renice, re-pin CPUs, join namespaces.
_STRIPPED = (
    "pidfd_open",
    "pidfd_send_signal",
    "setpriority",
    "sched_setaffinity",
    "sched_setscheduler",
    "sched_setparam",
    "setns",
    "unshare",
)
_NETWORK_EVENTS = frozenset(
    {
        "socket.__new__",
        "socket.connect",
        "socket.bind",
        "socket.sendto",
        "socket.sendmsg",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.getnameinfo",
    }
)
_PROCESS_EVENTS = frozenset(
    {
        "os.fork",
        "os.forkpty",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.startfile",
        "os.killpg",
        "subprocess.Popen",
        "pty.spawn",
        "webbrowser.open",
        "syslog.openlog",
        "syslog.syslog",
    }
)
# event -> (argument positions holding paths, position of dir_fd or None)
_MUTATING_EVENTS = {
    "os.remove": ((0,), 1),
    "os.rmdir": ((0,), 1),
    "os.mkdir": ((0,), 2),
    "os.chmod": ((0,), 2),
    "os.chown": ((0,), 3),
    "os.utime": ((0,), 3),
    "os.truncate": ((0,), None),
    "os.mkfifo": ((0,), 2),
    "os.mknod": ((0,), 3),
    "os.setxattr": ((0,), None),
    "os.removexattr": ((0,), None),
    "os.chflags": ((0,), None),
    "os.lchflags": ((0,), None),
    "os.rename": ((0, 1), 2),
    "os.link": ((0, 1), 2),
    "shutil.rmtree": ((0,), 1),
}
_READ_FILES = frozenset(
    {
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/etc/localtime",
        "/etc/timezone",
        "/etc/mime.types",
        "/etc/os-release",
        "/usr/lib/os-release",
        "/proc/cpuinfo",
        "/proc/meminfo",
    }
)
_READ_DIRS = ("/usr/share",)
_WRITE_FILES = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class _TestTimeout(BaseException):
    """Raised by the SIGALRM handler; a BaseException so ``except Exception`` cannot eat it."""


class _Channel:
    """JSON lines to the parent, tagged with the job's nonce; one ``os.write`` per line."""

    def __init__(self, fd, nonce):
        self.fd = fd
        self.nonce = nonce
        self.pid = os.getpid()
        self.flagged = set()

    def send(self, **message):
        if os.getpid() != self.pid:  # a forked copy of the harness never reports
            os._exit(0)
        message["n"] = self.nonce
        data = (json.dumps(message, ensure_ascii=True) + "\n").encode()
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:
            pass

    def flag(self, kind, detail):
        """Report the first occurrence of a policy or resource event of each kind."""
        if kind not in self.flagged:
            self.flagged.add(kind)
            self.send(t="flag", kind=kind, detail=_clip(detail))


def _clip(text, limit=_MAX_TEXT):
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _libc():
    import ctypes  # only before the audit hook; removed from sys.modules afterwards

    return ctypes, ctypes.CDLL(None, use_errno=True)


def _isolate(job):
    """Namespaces, rlimits and the uid switch. Returns human-readable notes on what is active."""
    import resource

    notes = []
    ctypes, libc = _libc()
    if job.get("unshare_net"):
        flags = _CLONE_NEWNET if os.geteuid() == 0 else _CLONE_NEWUSER | _CLONE_NEWNET
        if libc.unshare(flags) == 0:
            notes.append("network namespace (no interfaces up)")
        else:
            err = ctypes.get_errno()
            notes.append(f"no network namespace (unshare: {os.strerror(err)})")
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0:
        notes.append("no_new_privs")
    limits = job["limits"]
    cpu = int(limits["cpu_seconds"] + 0.999)
    pairs = [
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_AS, limits["memory_bytes"], limits["memory_bytes"]),
        (resource.RLIMIT_FSIZE, limits["file_size_bytes"], limits["file_size_bytes"]),
        (resource.RLIMIT_NOFILE, limits["open_files"], limits["open_files"]),
    ]
    if limits.get("processes"):
        pairs.append((resource.RLIMIT_NPROC, limits["processes"], limits["processes"]))
    for which, soft, hard in pairs:
        _, old_hard = resource.getrlimit(which)
        if old_hard != resource.RLIM_INFINITY and hard > old_hard:
            soft, hard = min(soft, old_hard), old_hard
        resource.setrlimit(which, (soft, hard))
    notes.append(
        f"rlimits: cpu {cpu} s, memory {limits['memory_bytes'] >> 20} MB, "
        f"file {limits['file_size_bytes'] >> 20} MB, "
        f"processes {limits.get('processes') or 'unchanged'}, no core"
    )
    drop = job.get("drop")
    if drop:
        uid, gid = drop
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        if os.getuid() != uid or os.geteuid() != uid:
            raise RuntimeError(f"could not switch to uid {uid}")
        # a uid change makes the process non-dumpable, which hides its own /proc/self entries
        libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
        notes.append(f"unprivileged uid {uid} gid {gid}")
    del libc, ctypes
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))]:
        del sys.modules[name]
    return notes


def _strip(deny):
    """Replace the unaudited cross-process functions with ones that refuse."""

    def refuser(attribute):
        def refuse(*args, **kwargs):
            deny(f"reaching other processes ({attribute})")

        return refuse

    for name in ("posix", "os", "_signal", "signal"):
        module = sys.modules.get(name)
        for attribute in _STRIPPED:
            if module is not None and hasattr(module, attribute):
                setattr(module, attribute, refuser(attribute))


def _real(path, dir_fd=None):
    """The absolute, symlink-resolved form of ``path`` (relative to ``dir_fd`` when given)."""
    path = os.fsdecode(os.fspath(path))
    if not os.path.isabs(path):
        base = os.getcwd()
        if isinstance(dir_fd, int) and dir_fd >= 0:
            base = os.readlink(f"/proc/self/fd/{dir_fd}")
        path = os.path.join(base, path)
    return os.path.realpath(path)


def _inside(path, root):
    return path == root or path.startswith(root.rstrip("/") + "/")


def _install_guard(channel, workdir):
    """The audit hook: refuse escapes and tell the parent about the first one of each kind."""
    workdir = os.path.realpath(workdir)
    own_proc = f"/proc/{os.getpid()}"
    read_roots = [os.path.realpath(p) for p in sys.path if p and os.path.exists(p)]
    read_roots.append(os.path.dirname(os.path.realpath(os.__file__)))
    read_roots.extend(_READ_DIRS)
    read_roots.extend([workdir, own_proc])
    busy = set()  # thread ids inside the hook: its own file checks must not recurse

    def deny(what):
        channel.flag("forbidden", "the code attempted a forbidden operation: " + what)
        raise PermissionError(f"[sandbox] {what} is not allowed")

    def readable(real):
        return real in _READ_FILES or any(_inside(real, root) for root in read_roots)

    def check_open(args):
        path, mode, flags = ([*list(args), None, None, None])[:3]
        if isinstance(path, int) or path is None:
            return
        raw = os.fsdecode(os.fspath(path))
        writing = bool((flags or 0) & _WRITE_FLAGS) or (
            isinstance(mode, str) and any(c in mode for c in "wax+")
        )
        climbs = os.path.normpath(raw).split(os.sep)[0] == ".."
        if not os.path.isabs(raw) and climbs:  # relative paths may be relative to a dir_fd
            deny(f"opening {raw!r} (outside the sandbox folder)")
        if writing and raw in _WRITE_FILES:
            return
        real = _real(raw)
        if writing:
            if not _inside(real, workdir):
                deny(f"writing {real} (outside the sandbox folder)")
        elif not readable(real):
            if real.startswith("/proc/") and real.split("/")[2].isdigit():
                deny(f"reading {real} (another process)")
            deny(f"reading {real} (outside the sandbox's allowed paths)")
        elif os.path.isdir(real) and not _inside(real, workdir) and not _inside(real, own_proc):
            deny(f"opening the directory {real}")

    def check_paths(event, args):
        positions, dir_fd_at = _MUTATING_EVENTS[event]
        dir_fd = args[dir_fd_at] if dir_fd_at is not None and len(args) > dir_fd_at else None
        for at in positions:
            if at < len(args) and not isinstance(args[at], int) and args[at] is not None:
                real = _real(args[at], dir_fd)
                if not _inside(real, workdir):
                    deny(f"{event} on {real} (outside the sandbox folder)")

    def hook(event, args):
        me = _thread.get_ident()
        if me in busy:
            return
        busy.add(me)
        try:
            if event == "open":
                check_open(args)
            elif event == "import":
                if args and str(args[0]).split(".")[0] in _DENIED_MODULES:
                    deny(f"importing {args[0]}")
            elif event in _NETWORK_EVENTS:
                deny(f"network access ({event})")
            elif event in _PROCESS_EVENTS:
                deny(f"starting processes ({event})")
            elif event.startswith("ctypes."):
                deny(f"native code ({event})")
            elif event in _MUTATING_EVENTS:
                check_paths(event, args)
            elif event == "os.symlink":
                link = _real(args[1], args[2] if len(args) > 2 else None)
                target = os.path.join(os.path.dirname(link), os.fsdecode(os.fspath(args[0])))
                if not _inside(link, workdir) or not _inside(os.path.realpath(target), workdir):
                    deny(f"a symlink from {link} to {args[0]}")
            elif event == "os.chdir":
                if not isinstance(args[0], int) and not _inside(_real(args[0]), workdir):
                    deny(f"changing directory to {args[0]}")
            elif event == "os.kill":
                if args[0] != os.getpid():
                    deny(f"signalling process {args[0]}")
            elif event == "resource.prlimit":
                if args[0] not in (0, os.getpid()):
                    deny(f"changing the limits of process {args[0]}")
            elif event == "sys.addaudithook":
                deny("adding audit hooks")
        finally:
            busy.discard(me)

    _strip(deny)
    sys.addaudithook(hook)


def _explain(src, left_src, left, right_src, right, right_is_literal, left_is_call):
    """The message of a rewritten ``assert left <op> right`` that failed."""

    def show(value):
        try:
            return _clip(repr(value), 160)
        except Exception:
            return f"<unrepresentable {type(value).__name__}>"

    verb = "returned" if left_is_call else "is"
    parts = [f"{left_src} {verb} {show(left)}"]
    if not right_is_literal:
        parts.append(f"{right_src} is {show(right)}")
    return f"assert {src} failed: " + "; ".join(parts)


class _AssertRewriter(ast.NodeTransformer):
    """Turns ``assert a <op> b`` (no message) into code that reports both sides on failure."""

    def __init__(self):
        self.count = 0

    def visit_Assert(self, node):
        test = node.test
        if node.msg is not None or not isinstance(test, ast.Compare) or len(test.ops) != 1:
            return node
        self.count += 1
        lname, rname = f"__fk_l{self.count}", f"__fk_r{self.count}"
        left, right = test.left, test.comparators[0]
        explain = ast.Call(
            func=ast.Name("__fk_explain__", ast.Load()),
            args=[
                ast.Constant(ast.unparse(test)),
                ast.Constant(ast.unparse(left)),
                ast.Name(lname, ast.Load()),
                ast.Constant(ast.unparse(right)),
                ast.Name(rname, ast.Load()),
                ast.Constant(isinstance(right, ast.Constant)),
                ast.Constant(isinstance(left, ast.Call)),
            ],
            keywords=[],
        )
        compare = ast.Compare(ast.Name(lname, ast.Load()), test.ops, [ast.Name(rname, ast.Load())])
        nodes = [
            ast.Assign([ast.Name(lname, ast.Store())], left),
            ast.Assign([ast.Name(rname, ast.Store())], right),
            ast.If(
                ast.UnaryOp(ast.Not(), compare),
                [ast.Raise(ast.Call(ast.Name("AssertionError", ast.Load()), [explain], []))],
                [],
            ),
        ]
        for new in nodes:
            ast.copy_location(new, node)
        return nodes


def _compile_test(source, filename):
    tree = _AssertRewriter().visit(ast.parse(source, filename, "exec"))
    return compile(ast.fix_missing_locations(tree), filename, "exec")


def _describe(exc, sources):
    """``Type: message (where: `line`)`` for an exception, pointing at code we know."""
    try:
        name = type(exc).__name__
        message = str(exc)
    except Exception:
        return "<an exception that could not be described>"
    where = None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename in sources:
            where = (filename, tb.tb_lineno)
        tb = tb.tb_next
    if isinstance(exc, SyntaxError) and exc.filename in sources and exc.lineno:
        where = (exc.filename, exc.lineno)
        message = exc.msg
    text = f"{name}: {message}" if message else name
    if where is not None:
        filename, lineno = where
        lines = sources[filename][1].splitlines()
        line = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
        rewritten = isinstance(exc, AssertionError) and message.startswith("assert ")
        shown = f": `{line}`" if line and not rewritten else ""
        text += f" ({sources[filename][0]} line {lineno}{shown})"
    return _clip(text)


def _classify(exc):
    """The resource kind an exception reveals, if any."""
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return "file_size"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk"
    if isinstance(exc, RuntimeError) and "can't start new thread" in str(exc):
        return "process"
    if isinstance(exc, BlockingIOError) and exc.errno == errno.EAGAIN:
        return "process"
    return None


_FLAG_DETAIL = {
    "memory": "the code ran out of memory (the {} MB limit)",
    "file_size": "the code wrote a file past the {} MB file-size limit",
    "disk": "the code filled its folder (the {} MB limit)",
    "process": "the code tried to start more threads or processes than the limit of {}",
}
_LOAD_VERDICT = {
    "memory": "memory_limit",
    "file_size": "output_limit",
    "disk": "output_limit",
    "process": "process_limit",
}


def _limit_text(job, kind):
    limits = job["limits"]
    value = {
        "memory": limits["memory_bytes"] >> 20,
        "file_size": limits["file_size_bytes"] >> 20,
        "disk": limits.get("disk_bytes", 0) >> 20,
        "process": job.get("max_processes"),
    }[kind]
    return _FLAG_DETAIL[kind].format(value)


def _flag_for(channel, job, exc, where):
    kind = _classify(exc)
    if kind is not None:
        channel.flag(kind, f"{_limit_text(job, kind)} {where}: {_describe(exc, {})}")
    return kind


_RESERVE = []  # memory freed on MemoryError so the harness can still report


def _free_reserve():
    del _RESERVE[:]


def _refill_reserve():
    if not _RESERVE:
        with contextlib.suppress(MemoryError):
            _RESERVE.append(bytearray(2 << 20))


def _on_alarm(signum, frame):
    raise _TestTimeout()


def _run(job, channel):
    sources = {"<solution>": ("solution", job["code"]), "<setup>": ("setup", job["setup"])}
    module = types.ModuleType("solution")
    module.__dict__["__builtins__"] = builtins
    sys.modules["solution"] = module
    namespace = module.__dict__

    for filename, label in (("<setup>", "setup"), ("<solution>", "code")):
        source = sources[filename][1]
        if not source.strip():
            continue
        flagged_before = set(channel.flagged)
        try:
            exec(compile(source, filename, "exec"), namespace)
        except BaseException as exc:
            if isinstance(exc, MemoryError):
                _free_reserve()
                namespace.clear()
            detail = _describe(exc, sources)
            kind = _flag_for(channel, job, exc, f"while loading the {label}")
            if isinstance(exc, SyntaxError):
                verdict = "syntax_error"
                detail = f"the {label} does not compile: {detail}"
            elif kind is not None:
                verdict = _LOAD_VERDICT[kind]
                detail = f"{_limit_text(job, kind)} while loading the {label}: {detail}"
            elif "forbidden" in channel.flagged - flagged_before:
                verdict = "forbidden"
                detail = f"the {label} was stopped while loading: {detail}"
            else:
                verdict = "load_error"
                detail = f"the {label} raised while loading: {detail}"
            channel.send(t="load_failed", verdict=verdict, detail=_clip(detail))
            return
    channel.send(t="loaded")

    signal.signal(signal.SIGALRM, _on_alarm)
    timeout = float(job["test_timeout"])
    for index, test in enumerate(job["tests"]):
        filename = f"<test:{test['name']}>"
        sources[filename] = ("test", test["code"])
        channel.send(t="start", i=index)
        error = None
        scope = None
        _refill_reserve()
        started = time.perf_counter()
        try:
            code = _compile_test(test["code"], filename)
            scope = dict(namespace)
            scope["__fk_explain__"] = _explain
            try:
                signal.setitimer(signal.ITIMER_REAL, timeout)
                exec(code, scope)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _TestTimeout:
            error = f"timed out after {timeout:g} s"
        except BaseException as exc:
            if isinstance(exc, MemoryError) and scope is not None:
                _free_reserve()
                scope.clear()
            error = _describe(exc, sources)
            _flag_for(channel, job, exc, f"in test {test['name']!r}")
        duration = time.perf_counter() - started
        scope = None
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        channel.send(
            t="result", i=index, passed=error is None, error=error, duration=round(duration, 6)
        )


def main():
    """Read the job, isolate, run, report; always leave with ``os._exit``."""
    job = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    fd = job.get("result_fd")
    if fd is None:  # Docker: results on the container's stderr, the code's stderr -> stdout
        fd = os.dup(2)
        os.dup2(1, 2)
    os.set_inheritable(fd, False)
    channel = _Channel(fd, job["nonce"])
    try:
        notes = _isolate(job)
        if job.get("audit", True):
            _install_guard(channel, job["workdir"])
            notes.append("audit hook (network, processes, native code, files)")
        if sys.flags.no_site:
            notes.append("standard library only (python -S)")
    except BaseException as exc:  # the sandbox itself is broken: not the code's fault
        channel.send(t="fatal", detail=_clip(f"{type(exc).__name__}: {exc}"))
        os._exit(3)
    _RESERVE.append(bytearray(2 << 20))

    def on_cpu_limit(signum, frame):
        # PID 1 of a container ignores SIGXCPU's default action: report it and leave
        channel.send(t="cpu")
        os._exit(128 + signal.SIGXCPU)

    signal.signal(signal.SIGXCPU, on_cpu_limit)
    channel.send(t="ready", isolation=notes, python=sys.version.split()[0])
    try:
        _run(job, channel)
    except BaseException as exc:  # after the code loaded, blame the code: a crash, not fatal
        _free_reserve()
        channel.send(t="broken", detail=_clip(f"{type(exc).__name__}: {exc}"))
        os._exit(4)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    channel.send(t="done")
    os._exit(0)


if __name__ == "__main__":
    main()
