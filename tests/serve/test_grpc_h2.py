"""lightspeed's own HTTP/2 gRPC transport at the frame level, and through tritonclient
where a feature needs it (compression, flow control of large responses)."""

from __future__ import annotations

import socket
import struct

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2 as pb

from lightspeed.serve import grpc_h2 as h2
from lightspeed.serve.server import BackgroundServer, ServerConfig
from tests.serve.conftest import add_python_models

hpack = pytest.importorskip("hpack")

BIG = 300_000  # floats per output row: 1.2 MB, far past HTTP/2's 64 KiB default window


def _setup(core):
    add_python_models(core)
    core.add_python_model(
        "big",
        lambda d: {"y": np.repeat(d["x"][:, :1], BIG, axis=1) + np.arange(BIG, dtype=np.float32)},
        [("x", "FP32", [4])],
        [("y", "FP32", [BIG])],
        max_batch_size=4,
    )


@pytest.fixture(scope="module")
def srv():
    config = ServerConfig(
        grpc_port=0, http_port=-1, metrics_port=-1, max_message_bytes=8 << 20, drain_timeout_s=5
    )
    with BackgroundServer(config, setup=_setup) as s:
        yield s


def _input(x):
    i = grpcclient.InferInput("x", list(x.shape), "FP32")
    i.set_data_from_numpy(x)
    return i


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests(srv, algorithm):
    c = grpcclient.InferenceServerClient(srv.grpc_url)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    got = c.infer("double", [_input(x)], compression_algorithm=algorithm).as_numpy("y")
    np.testing.assert_array_equal(got, 2 * x)
    c.close()


def test_large_response(srv):
    c = grpcclient.InferenceServerClient(srv.grpc_url)
    x = np.array([[3, 0, 0, 0], [5, 0, 0, 0]], np.float32)
    y = c.infer("big", [_input(x)]).as_numpy("y")
    assert y.shape == (2, BIG)
    np.testing.assert_array_equal(y[1], 5 + np.arange(BIG, dtype=np.float32))
    c.close()


# ----------------------------------------------------------------------------- raw client
class RawClient:
    """A bare HTTP/2 client: we choose every byte that goes out."""

    def __init__(self, url: str) -> None:
        host, port = url.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.buf = b""

    def send(self, data: bytes, chunk: int | None = None) -> None:
        if chunk is None:
            self.sock.sendall(data)
            return
        for i in range(0, len(data), chunk):
            self.sock.sendall(data[i : i + chunk])

    def start(self, settings: bytes = b"") -> None:
        self.send(h2.PREFACE + h2.frame(h2.SETTINGS, 0, 0, settings))

    def headers(self, path: str, extra=()) -> bytes:
        return self.enc.encode(
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "test"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                *extra,
            ]
        )

    def frames(self):
        """Frames from the server until the connection closes."""
        while True:
            while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
                try:
                    more = self.sock.recv(1 << 16)
                except (ConnectionResetError, TimeoutError):
                    more = b""
                if not more:
                    return
                self.buf += more
            n = int.from_bytes(self.buf[:3], "big")
            ftype, flags = self.buf[3], self.buf[4]
            sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload, self.buf = self.buf[9 : 9 + n], self.buf[9 + n :]
            yield ftype, flags, sid, payload

    def response(self, sid: int):
        """(headers, messages, trailers) of one stream."""
        heads: list = []
        messages = []
        data = b""
        for ftype, flags, s, payload in self.frames():
            if s != sid:
                continue
            if ftype == h2.HEADERS:
                heads.append(dict(self.dec.decode(payload)))
            elif ftype == h2.DATA:
                data += payload
            if flags & h2.END_STREAM:
                break
        while data:
            n = int.from_bytes(data[1:5], "big")
            messages.append(data[5 : 5 + n])
            data = data[5 + n :]
        return heads[0], messages, heads[-1]

    def close(self) -> None:
        self.sock.close()


def _infer_message(values) -> bytes:
    req = pb.ModelInferRequest(model_name="double", id="raw")
    x = np.asarray(values, np.float32).reshape(1, 4)
    req.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    req.raw_input_contents.append(x.tobytes())
    body = req.SerializeToString()
    return b"\x00" + len(body).to_bytes(4, "big") + body


INFER = "/inference.GRPCInferenceService/ModelInfer"


def test_padding_continuation_and_one_byte_writes(srv):
    c = RawClient(srv.grpc_url)
    c.start()
    block = c.headers(INFER)
    # HEADERS (padded, with priority) carrying half the block, then a CONTINUATION
    first = bytes([3]) + b"\x00\x00\x00\x00\x10" + block[:7] + b"\x00" * 3
    out = h2.frame(h2.HEADERS, h2.PADDED | h2.PRIORITY_FLAG, 1, first)
    out += h2.frame(h2.CONTINUATION, h2.END_HEADERS, 1, block[7:])
    message = _infer_message([1, 2, 3, 4])
    out += h2.frame(h2.DATA, 0, 1, message[:10])
    out += h2.frame(h2.DATA, h2.PADDED | h2.END_STREAM, 1, bytes([2]) + message[10:] + b"\x00\x00")
    c.send(out, chunk=1)
    head, messages, trailers = c.response(1)
    assert head[":status"] == "200" and trailers["grpc-status"] == "0"
    resp = pb.ModelInferResponse.FromString(messages[0])
    np.testing.assert_array_equal(
        np.frombuffer(resp.raw_output_contents[0], np.float32), [2, 4, 6, 8]
    )
    c.close()


def test_sending_respects_the_client_windows_and_frame_size(srv):
    c = RawClient(srv.grpc_url)
    c.start(struct.pack(">HI", h2.S_INITIAL_WINDOW_SIZE, 1000))
    req = pb.ModelInferRequest(model_name="big", id="w")
    req.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    req.raw_input_contents.append(np.full((1, 4), 7, np.float32).tobytes())
    body = req.SerializeToString()
    c.send(h2.frame(h2.HEADERS, h2.END_HEADERS, 1, c.headers(INFER)))
    c.send(h2.frame(h2.DATA, h2.END_STREAM, 1, b"\x00" + len(body).to_bytes(4, "big") + body))
    c.sock.settimeout(1.0)
    before = [(t, p) for t, _, sid, p in c.frames() if sid == 1]
    sent = sum(len(p) for t, p in before if t == h2.DATA)
    assert sent == 1000  # the stream window, not a byte more
    c.sock.settimeout(10)
    grant = (1 << 30).to_bytes(4, "big")
    c.send(h2.frame(h2.WINDOW_UPDATE, 0, 1, grant) + h2.frame(h2.WINDOW_UPDATE, 0, 0, grant))
    data = b"".join(p for t, p in before if t == h2.DATA)
    sizes = []
    for ftype, flags, sid, payload in c.frames():
        if sid == 1 and ftype == h2.DATA:
            data += payload
            sizes.append(len(payload))
        if sid == 1 and flags & h2.END_STREAM:
            assert ftype == h2.HEADERS
            break
    assert max(sizes) <= 16384  # the client's (default) maximum frame size
    resp = pb.ModelInferResponse.FromString(data[5:])
    y = np.frombuffer(resp.raw_output_contents[0], np.float32)
    np.testing.assert_array_equal(y, 7 + np.arange(BIG, dtype=np.float32))
    c.close()


def test_ping_is_acknowledged_and_unknown_method_is_unimplemented(srv):
    c = RawClient(srv.grpc_url)
    c.start()
    c.send(h2.frame(h2.PING, 0, 0, b"12345678"))
    for ftype, flags, _, payload in c.frames():
        if ftype == h2.PING:
            assert flags & h2.ACK and payload == b"12345678"
            break
    c.send(h2.frame(h2.HEADERS, h2.END_HEADERS | h2.END_STREAM, 1, c.headers("/nope/Method")))
    _, messages, trailers = c.response(1)
    assert messages == [] and trailers["grpc-status"] == "12"
    assert "/nope/Method" in trailers["grpc-message"]
    c.close()


def test_oversized_message_is_refused_from_its_length_prefix(srv):
    c = RawClient(srv.grpc_url)
    c.start()
    c.send(h2.frame(h2.HEADERS, h2.END_HEADERS, 1, c.headers(INFER)))
    c.send(h2.frame(h2.DATA, 0, 1, b"\x00" + (100 << 20).to_bytes(4, "big") + b"x" * 100))
    _, _, trailers = c.response(1)
    assert trailers["grpc-status"] == "8"
    assert "larger than max" in trailers["grpc-message"]
    # the connection still works for the next call
    c.send(h2.frame(h2.HEADERS, h2.END_HEADERS, 3, c.headers(INFER)))
    c.send(h2.frame(h2.DATA, h2.END_STREAM, 3, _infer_message([1, 1, 1, 1])))
    _, messages, trailers = c.response(3)
    assert trailers["grpc-status"] == "0" and len(messages) == 1
    c.close()


def test_garbage_and_reset_streams_leave_the_server_up(srv):
    bad = RawClient(srv.grpc_url)
    bad.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    goaway = [p for ftype, _, _, p in bad.frames() if ftype == h2.GOAWAY]
    assert goaway and int.from_bytes(goaway[0][4:8], "big") == h2.PROTOCOL_ERROR
    bad.close()
    c = RawClient(srv.grpc_url)
    c.start()
    # a call to the slow model, reset by the client before the answer
    req = pb.ModelInferRequest(model_name="slow", id="gone")
    req.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    req.raw_input_contents.append(np.ones((1, 4), np.float32).tobytes())
    body = req.SerializeToString()
    c.send(h2.frame(h2.HEADERS, h2.END_HEADERS, 1, c.headers(INFER)))
    c.send(h2.frame(h2.DATA, h2.END_STREAM, 1, b"\x00" + len(body).to_bytes(4, "big") + body))
    c.send(h2.frame(h2.RST_STREAM, 0, 1, struct.pack(">I", h2.CANCEL)))
    c.send(h2.frame(h2.HEADERS, h2.END_HEADERS, 3, c.headers(INFER)))
    c.send(h2.frame(h2.DATA, h2.END_STREAM, 3, _infer_message([2, 2, 2, 2])))
    _, messages, trailers = c.response(3)
    assert trailers["grpc-status"] == "0" and len(messages) == 1
    c.close()
    client = grpcclient.InferenceServerClient(srv.grpc_url)
    assert client.is_server_live()
    client.close()


def test_hpack_integers_and_grpc_message_encoding():
    assert h2.hpack_int(10, 5) == bytes([10])
    assert h2.hpack_int(1337, 5) == bytes([31, 154, 10])  # RFC 7541 C.1.2
    assert h2.percent_encode("a%b\n€") == b"a%25b%0A%E2%82%AC"
    assert h2.parse_timeout(b"100m") == pytest.approx(0.1)
    assert h2.parse_timeout(b"5S") == 5.0
    assert h2.parse_timeout(b"5x") is None and h2.parse_timeout(b"S") is None
