/*
 * envoy_als.h: the decoder of Envoy's gRPC access-log stream messages
 * (envoy.service.accesslog.v3.StreamAccessLogsMessage, proto/envoy/...) into the access-log model
 * of storage.h, with the same mapping as the JSON access logs (accesslog.h MAPPING).
 *
 * MAPPING (HTTPAccessLogEntry / TCPAccessLogEntry -> struct access_log):
 *   common_properties.start_time                    -> time_unix_nano (required: else refused)
 *   common_properties.duration, else time_to_last_downstream_tx_byte -> duration_ms
 *   response_headers x-envoy-upstream-service-time, else time_to_first_upstream_rx_byte minus
 *     time_to_last_upstream_tx_byte                 -> upstream_service_time_ms
 *   upstream_cluster, route_name, upstream_transport_failure_reason,
 *   connection_termination_details                  -> same-named fields
 *   upstream_remote_address / upstream_local_address / downstream_remote_address /
 *   downstream_local_address ("ip:port")            -> upstream_host / upstream_local_address /
 *                                                      downstream_remote_address /
 *                                                      downstream_local_address
 *   tls_properties.tls_sni_hostname                 -> requested_server_name
 *   response_flags (one bool per flag)              -> Envoy's short codes, comma-separated
 *                                                      ("UH,URX"), "-" for none
 *   request: request_method (name), authority, path (original_path when set, as Envoy's
 *     %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%), user_agent, forwarded_for (x_forwarded_for),
 *     request_id, request_body_bytes (bytes_received)
 *   response: response_code (absent = 0, "no response", as Envoy), response_body_bytes
 *     (bytes_sent), response_code_details
 *   protocol_version                                -> protocol "HTTP/1.0" .. "HTTP/3"
 *   trace/span id: request_headers traceparent, else x-b3-traceid / x-b3-spanid, else
 *     custom_tags trace_id / span_id (a malformed id is ignored)
 *   custom_tags service, source_workload, source_namespace, source_principal,
 *     destination_workload, destination_namespace  -> the Istio custom fields
 *   TCP entries: connection_properties received_bytes / sent_bytes, protocol "TCP", no method
 *     and no response code (-1): they are stored but are not HTTP requests (RED skips them).
 *   direction and the fallbacks of service: accesslog_derive, after the node's identity:
 *   The stream's Identifier.node names the reporting proxy (sent on the first message only, so
 *   the caller keeps it per stream in struct als_node): its workload (metadata LABELS
 *   service.istio.io/canonical-name, else app, else WORKLOAD_NAME, else the cluster's first
 *   dot label, else the pod name of an Istio id "sidecar~IP~POD.NS~...") is the service of every
 *   entry that does not name one, and the source (outbound) or destination (inbound) workload;
 *   its namespace (metadata NAMESPACE, else the id's POD.NS) the matching namespace.
 *   ALOG_RAW holds a compact JSON rendering of the mapped fields (Envoy's JSON names).
 *
 * Limits: an entry with a string over lim->max_string bytes or no start_time is refused alone
 * (out->rejected, reason "http_logs[3]: ..."); more than lim->max_spans entries in one message,
 * -E2BIG. Undecodable protobuf: -EINVAL.
 * Thread-safety: none needed (works on the caller's objects).
 */
#ifndef MESHSCOPE_ENVOY_ALS_H
#define MESHSCOPE_ENVOY_ALS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otlp.h"
#include "storage.h"

/* The reporting proxy of one stream, from its Identifier.node (strings cut at 127 bytes). */
struct als_node {
    bool known;
    char workload[128];
    char ns[128];
};

/* Decodes one StreamAccessLogsMessage (body borrowed) into out (borrowed), updating *node when
 * the message carries an identifier. Contract of otlp_decode_traces_proto: 0 (out->logs holds
 * the valid entries, out->rejected the refused ones), -EINVAL (err says why), -E2BIG, -ENOMEM.
 * lim may be NULL (defaults). */
int envoy_als_decode(const uint8_t *body, size_t len, const struct decode_limits *lim,
                     struct als_node *node, struct span_batch *out, char *err, size_t errlen);

#endif
