"""Drives `gameday proxy` with toxiproxy-python (from PyPI), a client
written for Toxiproxy itself, and checks through a real redis-server that
what the client asks for happens.

usage: toxiproxy_python.py API_PORT REDIS_PORT
"""

import socket
import sys
import time

from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer

api_port, redis_port = int(sys.argv[1]), int(sys.argv[2])
APIConsumer.port = api_port
server = Toxiproxy()


def ping_ms(listen):
    host, port = listen.rsplit(":", 1)
    start = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"PING\r\n")
        reply = s.recv(64)
    assert reply == b"+PONG\r\n", reply
    return (time.monotonic() - start) * 1000


def refused(listen):
    host, port = listen.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64) == b""
    except OSError:
        return True


assert server.running(), "the API answers"
assert b"2." in server.version(), server.version()

upstream = "127.0.0.1:%d" % redis_port
proxy = server.create(upstream=upstream, name="redis")
assert proxy.listen.startswith("127.0.0.1:") and not proxy.listen.endswith(":0"), proxy.listen
assert "redis" in server.proxies()
assert ping_ms(proxy.listen) < 50

proxy.add_toxic(type="latency", attributes={"latency": 100, "jitter": 0})
assert list(proxy.toxics()) == ["latency_downstream"], proxy.toxics()
slow = ping_ms(proxy.listen)
assert 100 <= slow < 150, "latency 100 ms gave %.1f ms" % slow
proxy.destroy_toxic("latency_downstream")
assert proxy.toxics() == {}
assert ping_ms(proxy.listen) < 50

with proxy.down():
    assert refused(proxy.listen), "a disabled proxy refuses"
assert ping_ms(proxy.listen) < 50, "enabled again, on the same port"

# The client's populate: an identical definition is left alone.
again = server.populate([{"name": "redis", "upstream": upstream, "listen": proxy.listen}])
assert again == [], again
proxy.add_toxic(type="timeout", name="", attributes={"timeout": 0})
assert list(proxy.toxics()) == ["timeout_downstream"], proxy.toxics()
server.reset()
assert server.get_proxy("redis").toxics() == {}
assert ping_ms(proxy.listen) < 50

server.destroy_all()
assert server.proxies() == {}
print("toxiproxy-python: every check passed")
