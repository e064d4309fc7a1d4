"""gRPC on our own HTTP/2 transport (asyncio): the default gRPC front end.

Why not grpcio's server: Python's ``grpc.aio`` server spends ~300 µs of CPU per
unary call in its own machinery (completion-queue polling, Cython call objects,
one asyncio task per call), ten times what lightspeed's request path costs. On a
2-core box that shared cost is the whole throughput gap to Triton's C++ server.

This module speaks the part of HTTP/2 (RFC 9113) that gRPC uses, on one
``asyncio.Protocol`` per connection:

- frames are parsed straight out of the receive buffer; HPACK header blocks are
  decoded by the ``hpack`` package, with a per-connection cache of blocks that
  did not change the dynamic table (a gRPC client repeats the same block for
  every call, so nearly every call skips decoding);
- ModelInfer needs no task: the request is decoded and queued synchronously and
  a done-callback on the batcher's future writes HEADERS + DATA + trailers;
- writes made during one loop iteration leave in one ``send``;
- flow control in both directions (we open large receive windows and replenish
  them; sending respects the peer's windows and frame size), PING, SETTINGS,
  RST_STREAM, GOAWAY, CONTINUATION, padding, ``grpc-timeout`` deadlines,
  gzip/deflate request messages, and size limits.

Every RPC of the service goes through the same servicer as the grpcio front end
(:class:`~lightspeed.serve.grpc_server.InferenceServicer`), so the two answer
identically; ``lightspeed serve --grpc-frontend grpcio`` keeps grpcio's server.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import zlib
from dataclasses import dataclass
from functools import partial
from typing import Any

import grpc
from tritonclient.grpc import service_pb2 as pb

from lightspeed.serve.errors import ServeError
from lightspeed.serve.grpc_codec import encode_response
from lightspeed.serve.logs import kv

log = logging.getLogger("lightspeed.serve.grpc")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 8, 9
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
# error codes (RFC 9113 section 7)
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 6, 7, 8, 9
# settings identifiers
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS = 1, 2, 3
S_INITIAL_WINDOW_SIZE, S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE = 4, 5, 6

MAX_WINDOW = (1 << 31) - 1
MAX_FRAME = (1 << 24) - 1  # the largest frame we accept (the protocol's limit)
# the largest frame we ask for: bigger frames sit whole in the receive buffer, and
# growing a buffer to megabytes read by read costs more than parsing more frames
RECV_FRAME = 1 << 16
WINDOW_REFILL = 1 << 20  # replenish a receive window once this much was consumed
MAX_HEADER_LIST = 1 << 20
GRPC_STATUS = {c.name: c.value[0] for c in grpc.StatusCode}  # "NOT_FOUND" -> 5, ...
_TIMEOUT_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
_HDR = struct.Struct(">HBBBI")  # 24-bit length as (high 16, low 8), type, flags, stream id


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _HDR.pack(n >> 8, n & 0xFF, ftype, flags, stream_id) + payload


# ----------------------------------------------------------------------------- HPACK (encode)
def hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """HPACK's prefix-coded integer (RFC 7541 section 5.1)."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(name: bytes, value: bytes) -> bytes:
    """A header as "literal without indexing, new name": stateless, no Huffman."""
    return b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


_STATUS_200 = b"\x88"  # static table entry 8
RESPONSE_HEADERS = _STATUS_200 + literal(b"content-type", b"application/grpc")
TRAILERS_OK = literal(b"grpc-status", b"0")


def percent_encode(message: str) -> bytes:
    """grpc-message encoding: printable ASCII except '%' as is, other bytes as %XX."""
    raw = message.encode("utf-8", "replace")
    return b"".join(bytes((c,)) if 0x20 <= c <= 0x7E and c != 0x25 else b"%%%02X" % c for c in raw)


def status_trailers(code: int, message: str) -> bytes:
    block = literal(b"grpc-status", str(code).encode())
    return block + literal(b"grpc-message", percent_encode(message)) if message else block


def parse_timeout(value: bytes) -> float | None:
    """``grpc-timeout`` ("100m", "5S", ...) in seconds; None when malformed."""
    unit = _TIMEOUT_UNITS.get(value[-1:])
    digits = value[:-1]
    if unit is None or not digits.isdigit() or len(digits) > 8:
        return None
    return int(digits) * unit


# ----------------------------------------------------------------------------- RPC table
@dataclass(frozen=True)
class Method:
    name: str
    request_type: Any
    handler: Any  # servicer method: (request, context) or (request_iterator, context)
    streaming: bool  # client or server streaming (ModelStreamInfer is both)


def method_table(servicer) -> dict[bytes, Method]:
    """``:path`` -> Method, from the service descriptor tritonclient ships."""
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    table = {}
    for m in service.methods:
        path = f"/{service.full_name}/{m.name}".encode()
        table[path] = Method(
            m.name,
            getattr(pb, m.input_type.name),
            getattr(servicer, m.name),
            m.client_streaming or m.server_streaming,
        )
    return table


class Abort(Exception):
    """``context.abort``: ends the call with a status (grpc.aio's AbortError)."""

    def __init__(self, code: int, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class CallContext:
    """The part of ``grpc.aio.ServicerContext`` the servicer uses."""

    def __init__(self, metadata: list) -> None:
        self._metadata = metadata

    async def abort(self, code, details: str = "", trailing_metadata=()) -> None:
        raise Abort(code.value[0] if hasattr(code, "value") else int(code), details)

    def invocation_metadata(self) -> list:
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self._metadata]


class ConnectionError_(Exception):
    """Ends the whole connection with GOAWAY (not the builtin ConnectionError)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------------- streams
class Stream:
    """One HTTP/2 stream = one RPC."""

    __slots__ = (
        "buf", "checked", "encoding", "finished", "future", "headers_sent", "id", "metadata",
        "method", "outq", "parts", "queue", "recv_done", "send_window", "size", "task", "timer",
        "trailer", "unacked",
    )  # fmt: skip

    def __init__(self, sid: int, send_window: int) -> None:
        self.id = sid
        self.method: Method | None = None
        self.buf = bytearray()  # streaming calls: bytes of the messages not yet complete
        self.parts: list[bytes] = []  # unary calls: the message's chunks, joined once
        self.size = 0
        self.checked = False  # the unary message's length prefix was checked
        self.metadata: list = []
        self.encoding = b"identity"
        self.recv_done = False  # the client half-closed
        self.finished = False  # we sent END_STREAM (or the stream was reset)
        self.send_window = send_window
        self.outq = bytearray()  # DATA waiting for flow-control window
        self.trailer: bytes | None = None  # trailers waiting behind outq
        self.headers_sent = False
        self.future: asyncio.Future | None = None
        self.task: asyncio.Task | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.queue: asyncio.Queue | None = None  # streaming requests
        self.unacked = 0

    def cancel(self) -> None:
        self.finished = True
        for job in (self.future, self.task, self.timer):
            if job is not None:
                job.cancel()


# ----------------------------------------------------------------------------- connection
class Connection(asyncio.Protocol):
    """One client connection: HTTP/2 framing, HPACK, flow control, RPC dispatch."""

    def __init__(self, server: H2GrpcServer) -> None:
        import hpack

        self.server = server
        self.servicer = server.servicer
        self.methods = server.methods
        self.max_message = server.max_message_bytes
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.preface_ok = False
        self.streams: dict[int, Stream] = {}
        self.last_stream_id = 0
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = MAX_HEADER_LIST
        self.header_cache: dict[bytes, list] = {}
        self.partial: tuple[int, int, list] | None = None  # headers awaiting CONTINUATION
        self.peer_window = 65535  # initial stream send window, from the peer's SETTINGS
        self.peer_max_frame = 16384
        self.send_window = 65535  # connection-level
        self.blocked: dict[int, Stream] = {}
        self.unacked = 0
        self.out: list[bytes] = []
        self.flush_pending = False
        self.going_away = False
        self.closed = False

    # ------------------------------------------------------------------ transport events
    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        settings = struct.pack(
            ">HIHIHIHI",
            S_ENABLE_PUSH, 0,
            S_INITIAL_WINDOW_SIZE, MAX_WINDOW,
            S_MAX_FRAME_SIZE, RECV_FRAME,
            S_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST,
        )  # fmt: skip
        self.write(frame(SETTINGS, 0, 0, settings))
        self.write(frame(WINDOW_UPDATE, 0, 0, (MAX_WINDOW - 65535).to_bytes(4, "big")))
        self.server.connections.add(self)
        if self.server.closing:
            self.go_away()

    def connection_lost(self, exc) -> None:
        self.closed = True
        for stream in self.streams.values():
            stream.cancel()
        self.streams.clear()
        self.blocked.clear()
        self.server.connections.discard(self)
        self.server.notify()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        try:
            used = self.process(buf)
        except ConnectionError_ as exc:
            log.warning("gRPC connection closed", extra=kv(error=str(exc)))
            self.fail(exc.code, str(exc))
            return
        except Exception as exc:  # a bug must not take the server down
            log.exception("gRPC connection failed")
            self.fail(INTERNAL_ERROR, f"internal error: {exc}")
            return
        if used:
            del buf[:used]
        if self.unacked >= WINDOW_REFILL:
            self.write(frame(WINDOW_UPDATE, 0, 0, self.unacked.to_bytes(4, "big")))
            self.unacked = 0

    def fail(self, code: int, message: str) -> None:
        self.write(
            frame(GOAWAY, 0, 0, struct.pack(">II", self.last_stream_id, code) + message.encode())
        )
        self.flush()
        if self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------------ writing
    def write(self, data: bytes) -> None:
        self.out.append(data)
        if not self.flush_pending:
            self.flush_pending = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_pending = False
        if self.out and not self.closed and self.transport is not None:
            self.transport.write(b"".join(self.out))
        self.out.clear()

    # ------------------------------------------------------------------ frame parsing
    def process(self, buf: bytearray) -> int:
        off = 0
        n = len(buf)
        if not self.preface_ok:
            if n < len(PREFACE):
                if not PREFACE.startswith(bytes(buf)):
                    raise ConnectionError_(PROTOCOL_ERROR, "not an HTTP/2 (gRPC) client")
                return 0
            if buf[: len(PREFACE)] != PREFACE:
                raise ConnectionError_(PROTOCOL_ERROR, "not an HTTP/2 (gRPC) client")
            off = len(PREFACE)
            self.preface_ok = True
        view = memoryview(buf)
        try:
            while n - off >= 9:
                hi, lo, ftype, flags, sid = _HDR.unpack_from(buf, off)
                length = hi << 8 | lo
                if length > MAX_FRAME:
                    raise ConnectionError_(FRAME_SIZE_ERROR, f"frame of {length} bytes")
                end = off + 9 + length
                if end > n:
                    break
                self.on_frame(ftype, flags, sid & 0x7FFFFFFF, view[off + 9 : end])
                off = end
        finally:
            view.release()
        return off

    def on_frame(self, ftype: int, flags: int, sid: int, payload: memoryview) -> None:
        if self.partial is not None and ftype != CONTINUATION:
            raise ConnectionError_(PROTOCOL_ERROR, "header block interrupted")
        if ftype == DATA:
            self.on_data(flags, sid, payload)
        elif ftype == HEADERS:
            if sid == 0 or sid % 2 == 0:
                raise ConnectionError_(PROTOCOL_ERROR, f"HEADERS on stream {sid}")
            pos, end = _unpad(flags, payload)
            if flags & PRIORITY_FLAG:
                pos += 5
            block = bytes(payload[pos:end])
            if flags & END_HEADERS:
                self.on_headers(sid, flags, block)
            else:
                self.partial = (sid, flags, [block])
        elif ftype == CONTINUATION:
            if self.partial is None or self.partial[0] != sid:
                raise ConnectionError_(PROTOCOL_ERROR, "unexpected CONTINUATION")
            self.partial[2].append(bytes(payload))
            if flags & END_HEADERS:
                psid, pflags, blocks = self.partial
                self.partial = None
                self.on_headers(psid, pflags, b"".join(blocks))
        elif ftype == WINDOW_UPDATE:
            self.on_window_update(sid, int.from_bytes(payload[:4], "big") & MAX_WINDOW)
        elif ftype == SETTINGS:
            if not flags & ACK:
                self.on_settings(payload)
        elif ftype == PING:
            if not flags & ACK:
                self.write(frame(PING, ACK, 0, bytes(payload)))
        elif ftype == RST_STREAM:
            stream = self.streams.pop(sid, None)
            if stream is not None:
                stream.cancel()
                self.blocked.pop(sid, None)
                self.server.notify()
        elif ftype == GOAWAY:
            self.going_away = True  # the client opens no new streams; ours finish
        elif ftype == PUSH_PROMISE:
            raise ConnectionError_(PROTOCOL_ERROR, "a client must not send PUSH_PROMISE")
        # PRIORITY and unknown frame types are ignored, as RFC 9113 asks

    def on_settings(self, payload: memoryview) -> None:
        if len(payload) % 6:
            raise ConnectionError_(FRAME_SIZE_ERROR, "SETTINGS payload not a multiple of 6")
        for i in range(0, len(payload), 6):
            key, value = struct.unpack_from(">HI", payload, i)
            if key == S_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ConnectionError_(FLOW_CONTROL_ERROR, "initial window too large")
                delta = value - self.peer_window
                self.peer_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
            elif key == S_MAX_FRAME_SIZE:
                if not 16384 <= value <= MAX_FRAME:
                    raise ConnectionError_(PROTOCOL_ERROR, f"bad MAX_FRAME_SIZE {value}")
                self.peer_max_frame = value
        self.write(frame(SETTINGS, ACK, 0))
        self.pump_blocked()

    def on_window_update(self, sid: int, increment: int) -> None:
        if sid == 0:
            self.send_window += increment
            self.pump_blocked()
            return
        stream = self.streams.get(sid)
        if stream is not None:
            stream.send_window += increment
            if sid in self.blocked:
                self.pump(stream)

    def decode_headers(self, block: bytes) -> list:
        cached = self.header_cache.get(block)
        if cached is not None:
            return cached
        import hpack

        table = self.decoder.header_table
        entries = table.dynamic_entries
        first = entries[0] if entries else None  # held: its identity cannot be reused
        size, maxsize = len(entries), table.maxsize
        try:
            headers = list(self.decoder.decode(block, raw=True))
        except hpack.HPACKError as exc:
            raise ConnectionError_(COMPRESSION_ERROR, f"bad header block: {exc}") from None
        if (
            len(entries) != size
            or table.maxsize != maxsize
            or (entries and entries[0] is not first)
        ):
            self.header_cache.clear()  # the table changed: cached blocks may now mean more
        else:
            if len(self.header_cache) >= 64:
                self.header_cache.clear()
            self.header_cache[block] = headers
        return headers

    # ------------------------------------------------------------------ requests
    def on_headers(self, sid: int, flags: int, block: bytes) -> None:
        headers = self.decode_headers(block)
        stream = self.streams.get(sid)
        if stream is not None:  # trailers from the client: only END_STREAM matters
            if flags & END_STREAM:
                self.end_of_request(stream)
            return
        if sid <= self.last_stream_id:
            return  # a stream we already closed (reset, answered early)
        self.last_stream_id = sid
        if self.going_away or self.server.closing:
            self.write(frame(RST_STREAM, 0, sid, REFUSED_STREAM.to_bytes(4, "big")))
            return
        stream = Stream(sid, self.peer_window)
        self.streams[sid] = stream
        path = ctype = None
        for name, value in headers:
            if name == b":path":
                path = value
            elif name == b"content-type":
                ctype = value
            elif name == b"grpc-timeout":
                timeout = parse_timeout(value)
                if timeout is not None:
                    stream.timer = self.loop.call_later(timeout, self.deadline, stream)
            elif name == b"grpc-encoding":
                stream.encoding = value
            elif name[:1] != b":":
                stream.metadata.append((name, value))
        if flags & END_STREAM:
            stream.recv_done = True
        method = self.methods.get(path) if path is not None else None
        if ctype is None or not ctype.startswith(b"application/grpc"):
            self.respond_error(stream, 3, f"content-type must be application/grpc, got {ctype!r}")
        elif method is None:
            self.respond_error(stream, 12, f"unknown method {path!r} of the inference service")
        elif stream.encoding not in (b"identity", b"gzip", b"deflate"):
            self.respond_error(stream, 12, f"message encoding {stream.encoding!r} is not supported")
        else:
            stream.method = method
            if method.streaming:
                stream.queue = asyncio.Queue()
                stream.task = self.loop.create_task(self.run_streaming(stream, method))
            if stream.recv_done:
                self.end_of_request(stream)

    def on_data(self, flags: int, sid: int, payload: memoryview) -> None:
        length = len(payload)
        self.unacked += length
        stream = self.streams.get(sid)
        if stream is None or stream.finished or stream.method is None:
            return  # closed or already answered: counted for flow control, dropped
        pos, end = _unpad(flags, payload)
        stream.unacked += length
        if stream.queue is not None:  # streaming: hand over messages as they complete
            stream.buf += payload[pos:end]
            if not self.take_messages(stream):
                return
        elif end > pos:
            stream.parts.append(bytes(payload[pos:end]))
            stream.size += end - pos
            if not stream.checked and stream.size >= 5 and not self.check_size(stream):
                return
        if flags & END_STREAM:
            stream.recv_done = True
            self.end_of_request(stream)
        elif stream.unacked >= WINDOW_REFILL:
            self.write(frame(WINDOW_UPDATE, 0, sid, stream.unacked.to_bytes(4, "big")))
            stream.unacked = 0

    def check_size(self, stream: Stream) -> bool:
        """A unary message's length prefix, checked as soon as it arrives (False after
        answering it as too large): an oversized message is refused before its bytes."""
        stream.checked = True
        head = stream.parts[0] if len(stream.parts[0]) >= 5 else b"".join(stream.parts)
        size = int.from_bytes(head[1:5], "big")
        if size > self.max_message:
            self.respond_error(
                stream, 8, f"received message larger than max ({size} vs. {self.max_message})"
            )
            return False
        return True

    def take_messages(self, stream: Stream) -> bool:
        """Hand over the stream's complete messages, checking each size as soon as its
        length prefix arrives. False when the stream was answered with an error."""
        buf = stream.buf
        assert stream.queue is not None
        while len(buf) >= 5:
            size = int.from_bytes(buf[1:5], "big")
            if size > self.max_message:
                self.respond_error(
                    stream, 8, f"received message larger than max ({size} vs. {self.max_message})"
                )
                return False
            if len(buf) < 5 + size:
                return True
            message = self.message(stream, buf[0], bytes(buf[5 : 5 + size]))
            del buf[: 5 + size]
            if message is None:
                return False
            stream.queue.put_nowait(message)
        return True

    def message(self, stream: Stream, compressed: int, data: bytes | memoryview):
        """Decompress and parse one request message (None after answering an error)."""
        assert stream.method is not None
        if compressed:
            if stream.encoding == b"identity":
                self.respond_error(stream, 13, "compressed message without a grpc-encoding")
                return None
            d = zlib.decompressobj(31 if stream.encoding == b"gzip" else 15)
            try:
                data = d.decompress(data, self.max_message + 1)
            except zlib.error as exc:
                self.respond_error(stream, 13, f"cannot decompress the message: {exc}")
                return None
            if len(data) > self.max_message:
                self.respond_error(
                    stream, 8, f"decompressed message larger than max ({self.max_message})"
                )
                return None
        try:
            return stream.method.request_type.FromString(data)
        except Exception as exc:  # protobuf's DecodeError
            self.respond_error(
                stream, 3, f"cannot parse {stream.method.request_type.__name__}: {exc}"
            )
            return None

    def end_of_request(self, stream: Stream) -> None:
        method = stream.method
        if method is None or stream.finished:
            return
        if method.streaming:
            assert stream.queue is not None
            stream.queue.put_nowait(None)
            return
        parts = stream.parts
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        stream.parts = []
        if len(data) < 5 or int.from_bytes(data[1:5], "big") != len(data) - 5:
            self.respond_error(stream, 12, "a unary call must carry exactly one request message")
            return
        request = self.message(stream, data[0], memoryview(data)[5:])  # parsed without a copy
        if request is None:
            return
        if method.name == "ModelInfer":
            self.start_infer(stream, request)
        else:
            stream.task = self.loop.create_task(self.run_unary(stream, method, request))

    # ------------------------------------------------------------------ handlers
    def start_infer(self, stream: Stream, request) -> None:
        """The hot path: queue the request now; a done-callback answers it."""
        servicer = self.servicer
        if not servicer.accepting:
            self.respond_error(stream, 14, "server is shutting down")
            return
        try:
            model, future, shm_out = servicer._start(request)
        except Exception as exc:
            self.fail_call(stream, exc, "ModelInfer")
            return
        stream.future = future
        future.add_done_callback(partial(self.infer_done, stream, request.id, model, shm_out))

    def infer_done(self, stream: Stream, request_id: str, model, shm_out, future) -> None:
        if stream.finished or future.cancelled():
            return
        try:
            resp = encode_response(
                model, request_id, future.result(), shm_out, self.servicer.core.shm
            )
        except Exception as exc:  # the model's error, or one encoding its outputs
            self.fail_call(stream, exc, "ModelInfer")
            return
        self.respond(stream, resp.SerializeToString())

    def fail_call(self, stream: Stream, exc: Exception, what: str) -> None:
        """Answer a call with the status its exception stands for."""
        if isinstance(exc, Abort):
            self.respond_error(stream, exc.code, exc.details)
        elif isinstance(exc, ServeError):
            self.respond_error(stream, GRPC_STATUS[exc.code], exc.message)
        else:  # a bug: logged, the caller gets INTERNAL and the server stays up
            log.error("call failed", exc_info=exc, extra=kv(call=what))
            self.respond_error(stream, 13, f"internal error: {exc}")

    async def run_unary(self, stream: Stream, method: Method, request) -> None:
        try:
            resp = await method.handler(request, CallContext(stream.metadata))
        except Exception as exc:
            self.fail_call(stream, exc, method.name)
        else:
            self.respond(stream, resp.SerializeToString())

    async def run_streaming(self, stream: Stream, method: Method) -> None:
        queue = stream.queue
        assert queue is not None

        async def requests():
            while (item := await queue.get()) is not None:
                yield item

        try:
            async for resp in method.handler(requests(), CallContext(stream.metadata)):
                if stream.finished:
                    return
                self.send_message(stream, resp.SerializeToString())
        except Exception as exc:
            self.fail_call(stream, exc, method.name)
        else:
            self.end_stream(stream, TRAILERS_OK)

    def deadline(self, stream: Stream) -> None:
        stream.timer = None
        if not stream.finished:
            self.respond_error(stream, 4, "Deadline Exceeded")
            for job in (stream.future, stream.task):  # nobody waits for the answer now
                if job is not None:
                    job.cancel()

    # ------------------------------------------------------------------ responses
    def respond(self, stream: Stream, message: bytes) -> None:
        if len(message) > self.max_message:
            self.respond_error(
                stream, 8, f"response larger than max ({len(message)} vs. {self.max_message})"
            )
            return
        self.send_message(stream, message)
        self.end_stream(stream, TRAILERS_OK)

    def respond_error(self, stream: Stream, code: int, message: str) -> None:
        if stream.finished:
            return
        if stream.headers_sent:
            self.end_stream(stream, status_trailers(code, message))
            return
        # trailers-only response: one HEADERS frame carries status and error
        block = RESPONSE_HEADERS + status_trailers(code, message)
        stream.headers_sent = True
        stream.outq.clear()
        self.write(frame(HEADERS, END_HEADERS | END_STREAM, stream.id, block))
        self.close_stream(stream)

    def send_message(self, stream: Stream, message: bytes) -> None:
        if not stream.headers_sent:
            stream.headers_sent = True
            self.write(frame(HEADERS, END_HEADERS, stream.id, RESPONSE_HEADERS))
        stream.outq += len(message).to_bytes(5, "big")  # flag byte 0: not compressed
        stream.outq += message
        self.pump(stream)

    def end_stream(self, stream: Stream, trailers: bytes) -> None:
        if stream.finished:
            return
        stream.trailer = trailers
        self.pump(stream)

    def pump(self, stream: Stream) -> None:
        """Send what the flow-control windows allow; trailers once the data is out."""
        outq = stream.outq
        while outq:
            size = min(len(outq), self.send_window, stream.send_window, self.peer_max_frame)
            if size <= 0:
                self.blocked[stream.id] = stream
                return
            self.write(frame(DATA, 0, stream.id, bytes(outq[:size])))
            del outq[:size]
            self.send_window -= size
            stream.send_window -= size
        self.blocked.pop(stream.id, None)
        if stream.trailer is not None and not stream.finished:
            self.write(frame(HEADERS, END_HEADERS | END_STREAM, stream.id, stream.trailer))
            self.close_stream(stream)

    def pump_blocked(self) -> None:
        for stream in list(self.blocked.values()):
            if self.send_window <= 0:
                return
            self.pump(stream)

    def close_stream(self, stream: Stream) -> None:
        if not stream.recv_done:  # answered early: the client may stop sending
            self.write(frame(RST_STREAM, 0, stream.id, NO_ERROR.to_bytes(4, "big")))
        stream.finished = True
        if stream.timer is not None:
            stream.timer.cancel()
            stream.timer = None
        self.streams.pop(stream.id, None)
        self.blocked.pop(stream.id, None)
        if self.server.closing:
            self.server.notify()

    def go_away(self) -> None:
        """Graceful: no new streams; the open ones are answered."""
        if self.closed or self.transport is None:
            return
        self.going_away = True
        self.write(frame(GOAWAY, 0, 0, struct.pack(">II", self.last_stream_id, NO_ERROR)))


def _unpad(flags: int, payload: memoryview) -> tuple[int, int]:
    if not flags & PADDED:
        return 0, len(payload)
    pad = payload[0] if len(payload) else 0
    if pad >= len(payload):
        raise ConnectionError_(PROTOCOL_ERROR, "padding longer than the frame")
    return 1, len(payload) - pad


# ----------------------------------------------------------------------------- server
class H2GrpcServer:
    """Listens on a socket bound at construction; ``start()``/``stop(grace)`` like grpc.aio."""

    def __init__(self, servicer, sock: socket.socket, max_message_bytes: int) -> None:
        self.servicer = servicer
        self.methods = method_table(servicer)
        self.max_message_bytes = max_message_bytes
        self.sock = sock
        self.connections: set[Connection] = set()
        self.closing = False
        self._server: asyncio.base_events.Server | None = None
        self._idle: asyncio.Event | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Connection(self), sock=self.sock, backlog=1024
        )

    def notify(self) -> None:
        """A stream or connection ended: wake ``stop`` if nothing is left."""
        if self._idle is not None and not any(c.streams for c in self.connections):
            self._idle.set()

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let open calls finish (up to ``grace`` s), then close."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        self._idle = asyncio.Event()
        for conn in list(self.connections):
            conn.go_away()
        self.notify()
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            log.warning("gRPC calls still open after drain; closing them", extra=kv(drain_s=grace))
        for conn in list(self.connections):
            conn.flush()
            if conn.transport is not None:
                conn.transport.close()


def bind_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A listening-ready TCP socket on host:port (0 = a free port)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ServeError(
            "UNAVAILABLE",
            f"cannot bind the gRPC port {host}:{port} ({exc.strerror}); is it in use?",
        ) from None
    sock.setblocking(False)
    return sock
