"""The sidecar's HTTP/1.1 client to the backends: keep-alive, early close, stale connections."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from connectors.kafka.broker import free_port
from connectors.sidecar.upstream import UpstreamConnectError, UpstreamPool, UpstreamTimeout


@pytest.fixture
async def backend():
    peers: list[int] = []

    async def echo(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername")[1])
        body = await request.read()
        if request.query.get("stream"):
            resp = web.StreamResponse()
            await resp.prepare(request)
            for i in range(3):
                await resp.write(b"data: %d\n\n" % i)
                await asyncio.sleep(0.01)
            await resp.write_eof()
            return resp
        if request.query.get("slow"):
            await asyncio.sleep(1)
        headers = {"Connection": "close"} if request.query.get("close") else None
        return web.Response(body=body, content_type="application/json", headers=headers)

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", peers
    await runner.cleanup()


async def read_whole(pool: UpstreamPool, path: bytes) -> None:
    """One POST read to its end, its connection given back to `pool`."""
    resp = await pool.request(b"POST", path, b"{}")
    await resp.read()
    resp.release()


async def test_connections_are_kept_alive_between_requests(backend) -> None:
    url, peers = backend
    pool = UpstreamPool(url, 1.0, 5.0)
    for i in range(5):
        resp = await pool.request(b"POST", b"/echo", b'{"n": %d}' % i)
        assert (resp.status, resp.content_type) == (200, "application/json")
        assert await resp.read() == b'{"n": %d}' % i
        resp.release()
    assert len(set(peers)) == 1  # one TCP connection carried all five
    pool.close()


async def test_a_response_closed_before_its_end_is_never_reused(backend) -> None:
    url, peers = backend
    pool = UpstreamPool(url, 1.0, 5.0)
    resp = await pool.request(b"POST", b"/echo?stream=1", b"{}")
    chunks = resp.iter_chunks()
    assert (await anext(chunks)).startswith(b"data: 0")
    resp.close()  # the client left mid-stream
    await read_whole(pool, b"/echo")
    assert len(set(peers)) == 2
    pool.close()


async def test_streamed_chunked_bodies_arrive_whole(backend) -> None:
    url, _ = backend
    pool = UpstreamPool(url, 1.0, 5.0)
    resp = await pool.request(b"POST", b"/echo?stream=1", b"{}")
    assert b"".join([c async for c in resp.iter_chunks()]) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    resp.release()
    pool.close()


async def test_a_connection_the_backend_closed_is_replaced(backend) -> None:
    url, peers = backend
    pool = UpstreamPool(url, 1.0, 5.0)
    for _ in range(2):
        await read_whole(pool, b"/echo?close=1")
    assert len(set(peers)) == 2
    pool.close()


async def test_refused_connections_and_silence_raise_distinct_errors(backend) -> None:
    url, _ = backend
    with pytest.raises(UpstreamConnectError):
        await UpstreamPool(f"http://127.0.0.1:{free_port()}", 1.0, 5.0).request(
            b"POST", b"/echo", b"{}"
        )
    pool = UpstreamPool(url, 1.0, 0.2)
    with pytest.raises(UpstreamTimeout):
        await pool.request(b"POST", b"/echo?slow=1", b"{}")
    pool.close()


async def test_the_read_timeout_holds_on_a_reused_connection(backend) -> None:
    """The first answer leaves the connection's timer pending; the silent second still times out."""
    url, peers = backend
    pool = UpstreamPool(url, 1.0, 0.3)
    await read_whole(pool, b"/echo")
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(UpstreamTimeout):
        resp = await pool.request(b"POST", b"/echo?slow=1", b"{}")
        await resp.read()
    assert loop.time() - start < 0.9  # the timeout, not the backend's 1 s answer
    assert len(set(peers)) == 1  # the same connection both times
    pool.close()
