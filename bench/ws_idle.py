# Opens N idle WebSocket subscribers (/ws?peer_id=…, handshake only) to a hub from 127.0.2.2 on
# (200 per address: the hub needs presence.max_streams_per_ip ≥ 200), holds them 3 s, and prints
# the growth of the hub's RSS per socket. Bounded by N; closes everything when it exits.
# usage: python3 bench/ws_idle.py <hub port> <hub pid> <N>
import base64, os, socket, sys, time
port, pid, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
PEER = "12D3KooWStMgFoUmYA5Y71XkoZtCfPAoSRAmbfTXofZd793LpBJN"
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
before = rss()
socks = []
for i in range(n):
    s = socket.socket()
    s.bind((f"127.0.{2 + i // 200}.{2 + i % 200}", 0))
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws?peer_id={PEER} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit(f"socket {i}: closed: {head!r}")
        head += chunk
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise SystemExit(f"socket {i}: {head[:200]!r}")
    socks.append(s)
time.sleep(3)
after = rss()
print(f"{n} idle WebSocket subscribers: RSS {before} -> {after} KiB, {(after - before) / n:.1f} KiB each")
