"""Runs a command on a new pseudo-terminal, closes the terminal once its output shows `marker` (the kernel then
sends SIGHUP to the command, the terminal's controlling process), and prints how it ended as JSON."""
import json
import os
import pty
import select
import sys
import time

marker = sys.argv[1].encode()
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
seen = b''
deadline = time.time() + 120
while marker not in seen and time.time() < deadline:
    ready, _, _ = select.select([fd], [], [], 1)
    if ready:
        try:
            seen += os.read(fd, 65536)
        except OSError:
            break
os.close(fd)  # the terminal goes away, as when its window is closed
_, status = os.waitpid(pid, 0)
print(json.dumps({
    'marker': marker in seen,
    'signal': os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
    'code': os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
}))
