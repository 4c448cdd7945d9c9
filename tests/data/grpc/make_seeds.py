#!/usr/bin/env python3
"""Writes the fuzz_grpc seeds: one byte choosing the read size (0: all at once), then HTTP/2 client
frames (after the preface, which the target adds) carrying gRPC calls. Run: python3 make_seeds.py"""
import gzip
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))


def frame(ftype, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def hpack_literal(name, value):
    # literal header field without indexing, new name, no Huffman
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def headers(stream, path, extra=()):
    block = b"".join(hpack_literal(n, v) for n, v in [
        (b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
        (b":authority", b"localhost"), (b"content-type", b"application/grpc"),
        (b"te", b"trailers"), *extra])
    return frame(1, 4, stream, block)  # END_HEADERS


def message(body, compressed=False):
    return bytes([1 if compressed else 0]) + struct.pack(">I", len(body)) + body


def data(stream, payload, end=True):
    return frame(0, 1 if end else 0, stream, payload)


def varint(v):
    out = b""
    while v >= 0x80:
        out += bytes([v & 0x7F | 0x80])
        v >>= 7
    return out + bytes([v])


def field(no, payload):
    return varint(no << 3 | 2) + varint(len(payload)) + payload


def vfield(no, v):
    return varint(no << 3) + varint(v)


EXPORT = b"/opentelemetry.proto.collector.trace.v1.TraceService/Export"
ALS = b"/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs"
otlp = open(os.path.join(here, "../otlp/full.pb"), "rb").read()
node = field(1, b"sidecar~10.1.2.3~reviews-v1-abc.default~default.svc.cluster.local") + field(2, b"reviews.default")
common = field(5, vfield(1, 1700000000)) + field(15, b"inbound|9080||") + field(16, vfield(6, 1)) + \
    field(12, vfield(2, 5000000))
request = vfield(1, 1) + field(3, b"reviews:9080") + field(5, b"/reviews/1") + \
    field(13, field(1, b"traceparent") + field(2, b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
response = field(1, vfield(1, 503))
entry = field(1, common) + vfield(2, 2) + field(3, request) + field(4, response)
als1 = field(1, field(1, node)) + field(2, field(1, entry))
tcp = field(3, field(1, field(1, common) + field(2, vfield(1, 10) + vfield(2, 20))))
EMETRICS = b"/envoy.service.metrics.v3.MetricsService/StreamMetrics"
LOGS = b"/opentelemetry.proto.collector.logs.v1.LogsService/Export"
def fixed64(no, v):
    return varint(no << 3 | 1) + struct.pack("<d", v)
label = field(1, field(1, b"envoy_cluster_name") + field(2, b"outbound|9080||ratings"))
counter = field(4, label + field(3, fixed64(1, 42.0)) + vfield(6, 1700000000000))
hist = field(4, field(7, vfield(1, 10) + fixed64(2, 123.0) + field(3, vfield(1, 2) + fixed64(2, 5.0)) +
                     field(3, vfield(1, 10) + fixed64(2, float("inf")))))
families = field(2, field(1, b"envoy_cluster_upstream_rq") + vfield(3, 0) + counter) + \
    field(2, field(1, b"envoy_cluster_upstream_rq_time") + vfield(3, 4) + hist)
emetrics = field(1, field(1, node)) + families
logs = open(os.path.join(here, "../otlp_logs/sdk.pb"), "rb").read()
seeds = {
    "export.h2": headers(1, EXPORT) + data(1, message(otlp)),
    "export_gzip.h2": headers(1, EXPORT, [(b"grpc-encoding", b"gzip")]) + data(1, message(gzip.compress(otlp, mtime=0), True)),
    "als_stream.h2": headers(1, ALS) + data(1, message(als1), end=False) + data(1, message(tcp) + message(als1)),
    "unknown_method.h2": headers(1, b"/x.Y/Z") + data(1, message(b"")),
    "two_calls.h2": headers(1, EXPORT) + headers(3, ALS) + data(3, message(als1)) + data(1, message(otlp)),
    "envoy_metrics.h2": headers(1, EMETRICS) + data(1, message(emetrics), end=False) + data(1, message(families)),
    "logs.h2": headers(1, LOGS) + data(1, message(logs)),
}
for i, (name, content) in enumerate(seeds.items()):
    with open(os.path.join(here, name), "wb") as f:
        f.write(bytes([(0, 13, 1, 0, 100, 7, 0)[i]]) + content)
