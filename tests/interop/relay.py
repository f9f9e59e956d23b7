"""A TCP relay for one connection that can make a link go quiet on cue.

``QuietingRelay(port, mark, limit)`` listens on a free loopback port and
passes one client's connection through to ``port``: the client's bytes
always, the server's until ``limit`` of them have gone through (what the
client had sent when ``mark`` of them had is kept, so a test can wait for
the client's answer to what came after ``mark``). Then it stops reading
the server's side, so the server's sends stall as they would on a link gone
quiet, whatever the speed of the machine. When the client goes away (or
is killed) the relay ends the server's side with a FIN after the client's last bytes, so
the server reads everything the client sent before it sees the end.
"""

import select
import socket
import threading


class QuietingRelay:

    def __init__(self, port, mark, limit):
        self.target = port
        self.mark = mark
        self.limit = limit
        self.fromServer = 0
        self.fromClient = 0
        self.clientBytesAtMark = None
        self.quiet = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._sockets = [self.listener]
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()

    def _relay(self):
        client, _ = self.listener.accept()
        server = socket.create_connection(("127.0.0.1", self.target))
        self._sockets += [client, server]
        for s in (client, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            readable, _, _ = select.select([client] if self.quiet.is_set() else [client, server], [], [])
            if client in readable:
                try:
                    data = client.recv(65536)
                except ConnectionResetError:  # a client killed with bytes unread
                    data = b""
                if not data:
                    server.shutdown(socket.SHUT_WR)
                    return
                server.sendall(data)
                self.fromClient += len(data)
            if server in readable and not self.quiet.is_set():
                data = server.recv(min(65536, self.limit - self.fromServer))
                if not data:
                    return
                client.sendall(data)
                self.fromServer += len(data)
                if self.clientBytesAtMark is None and self.fromServer >= self.mark:
                    self.clientBytesAtMark = self.fromClient
                if self.fromServer >= self.limit:
                    self.quiet.set()

    def close(self):
        for s in self._sockets:
            s.close()
        self._thread.join(10)
