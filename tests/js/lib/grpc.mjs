/*
 * grpc.mjs: gRPC clients for the --otlp-grpc listener, built with @grpc/grpc-js and
 * @grpc/proto-loader from meshscope's own .proto files (proto/), as an Envoy sidecar's
 * access-log service client would be.
 */
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const PROTO_DIR = path.resolve(here, '../../../proto');
export { grpc };

const LOAD = { keepCase: true, longs: String, enums: String, defaults: false, oneofs: true, includeDirs: [PROTO_DIR] };

/** The AccessLogService, Envoy MetricsService and TraceService client constructors. */
export function services() {
  const def = protoLoader.loadSync(
    ['envoy/service/accesslog/v3/als.proto', 'envoy/service/metrics/v3/metrics_service.proto',
      'opentelemetry/proto/collector/trace/v1/trace_service.proto'],
    LOAD,
  );
  const pkg = grpc.loadPackageDefinition(def);
  return {
    AccessLogService: pkg.envoy.service.accesslog.v3.AccessLogService,
    EnvoyMetricsService: pkg.envoy.service.metrics.v3.MetricsService,
    TraceService: pkg.opentelemetry.proto.collector.trace.v1.TraceService,
  };
}

/** An insecure client of ctor at addr ("host:port"). */
export const client = (Ctor, addr, options = {}) => new Ctor(addr, grpc.credentials.createInsecure(), options);

/**
 * Opens a StreamAccessLogs call. Resolves {call, done}: done resolves {err, resp} when the server
 * answers (after call.end(), or earlier with an error status).
 */
export function openAccessLogStream(als, metadata = new grpc.Metadata()) {
  let call;
  const done = new Promise((resolve) => {
    call = als.StreamAccessLogs(metadata, (err, resp) => resolve({ err, resp }));
  });
  return { call, done };
}

/** Opens a StreamMetrics call (Envoy's metrics service); same shape as openAccessLogStream. */
export function openMetricsStream(ms, metadata = new grpc.Metadata()) {
  let call;
  const done = new Promise((resolve) => {
    call = ms.StreamMetrics(metadata, (err, resp) => resolve({ err, resp }));
  });
  return { call, done };
}

/** A unary call of method path with raw bytes (no schema): resolves {err, resp: Buffer}. */
export function rawUnary(c, method, bytes, metadata = new grpc.Metadata(), options = {}) {
  return new Promise((resolve) => {
    c.makeUnaryRequest(method, (b) => b, (b) => b, bytes, metadata, options, (err, resp) => resolve({ err, resp }));
  });
}

/** An Istio sidecar's Node for service svc in namespace ns. */
export function istioNode(svc, ns, ip) {
  return {
    id: `sidecar~${ip}~${svc}-v1-7d9f8c.${ns}~${ns}.svc.cluster.local`,
    cluster: `${svc}.${ns}`,
    metadata: {
      fields: {
        NAME: { string_value: `${svc}-v1-7d9f8c` },
        NAMESPACE: { string_value: ns },
        WORKLOAD_NAME: { string_value: `${svc}-v1` },
        LABELS: { struct_value: { fields: { app: { string_value: svc }, version: { string_value: 'v1' } } } },
      },
    },
  };
}

const ts = (ms) => ({ seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 });
const dur = (ms) => ({ seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 });
const sock = (address, port) => ({ socket_address: { address, port_value: port } });
const METHOD = { GET: 'GET', POST: 'POST' };

/**
 * One HTTPAccessLogEntry as Envoy's ALS sends it. e: {start (ms), ms, code, flags: {name: true},
 * inbound, peer (outbound: the called service), ns, method, path, traceId, spanId, requestId,
 * received, sent}.
 */
export function httpEntry(e) {
  const cluster = e.inbound ? 'inbound|9080||' : `outbound|9080||${e.peer}.${e.ns}.svc.cluster.local`;
  const headers = e.traceId ? { traceparent: `00-${e.traceId}-${e.spanId}-01` } : {};
  return {
    common_properties: {
      start_time: ts(e.start),
      time_to_last_downstream_tx_byte: dur(e.ms),
      time_to_last_upstream_tx_byte: dur(1),
      time_to_first_upstream_rx_byte: dur(Math.max(1, e.ms - 1)),
      upstream_cluster: cluster,
      upstream_remote_address: sock('10.0.0.7', 9080),
      downstream_remote_address: sock('10.0.0.5', 51234),
      response_flags: e.flags ?? {},
      route_name: 'default',
    },
    protocol_version: 'HTTP11',
    request: {
      request_method: METHOD[e.method ?? 'GET'],
      scheme: 'http',
      authority: e.inbound ? `${e.self}:9080` : `${e.peer}:9080`,
      path: e.path,
      user_agent: 'envoy-als-test',
      request_id: e.requestId,
      request_body_bytes: String(e.received ?? 0),
      request_headers: headers,
    },
    response: {
      response_code: { value: e.code },
      response_body_bytes: String(e.sent ?? 0),
      response_code_details: e.code < 500 ? 'via_upstream' : 'upstream_reset_before_response_started',
    },
  };
}

/** One TCPAccessLogEntry (a proxied connection). */
export function tcpEntry({ start, ms, received, sent, peer, ns }) {
  return {
    common_properties: {
      start_time: ts(start),
      duration: dur(ms),
      upstream_cluster: `outbound|3306||${peer}.${ns}.svc.cluster.local`,
      upstream_remote_address: sock('10.0.0.9', 3306),
    },
    connection_properties: { received_bytes: String(received), sent_bytes: String(sent) },
  };
}
