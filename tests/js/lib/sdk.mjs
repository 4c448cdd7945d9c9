/*
 * sdk.mjs: OpenTelemetry JS SDK set-ups the tests share.
 *
 * A provider sends every span twice: to an InMemorySpanExporter (the ReadableSpans the assertions
 * compare against) and, through a BatchSpanProcessor, to the real OTLP exporter under test. The
 * OTLP exporter is wrapped so the test sees each export's result code: processors swallow export
 * failures into diag logs.
 */
import { diag, DiagLogLevel } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import { OTLPTraceExporter as HttpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { OTLPTraceExporter as GrpcExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { CompressionAlgorithm } from '@opentelemetry/otlp-exporter-base';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import assert from 'node:assert/strict';

/* The SDK reports partial successes and export errors only through diag: collect them. */
export const diagMessages = [];
diag.setLogger(
  {
    error: (...a) => diagMessages.push(['error', a.map(String).join(' ')]),
    warn: (...a) => diagMessages.push(['warn', a.map(String).join(' ')]),
    info: () => {},
    debug: () => {},
    verbose: () => {},
  },
  { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true },
);

/** A SpanExporter that delegates and records every result. */
export class RecordingExporter {
  constructor(inner) {
    this.inner = inner;
    this.results = [];
    this.exportedSpans = 0;
  }
  export(spans, cb) {
    this.inner.export(spans, (r) => {
      this.results.push(r);
      if (r.code === ExportResultCode.SUCCESS) this.exportedSpans += spans.length;
      cb(r);
    });
  }
  shutdown() {
    return this.inner.shutdown();
  }
  forceFlush() {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
  assertAllSucceeded(what) {
    assert.ok(this.results.length > 0, `${what}: nothing was exported`);
    for (const r of this.results) {
      assert.equal(r.code, ExportResultCode.SUCCESS, `${what}: export failed: ${r.error?.stack ?? r.error}`);
    }
  }
}

/** An OTLP exporter: format 'proto' | 'json' (OTLP/HTTP at otlpUrl) | 'grpc' (OTLP/gRPC, otlpUrl
 * http://host:port), compression 'gzip' | 'none'. */
export function otlpExporter(otlpUrl, format, compression) {
  if (format === 'grpc') {
    return new GrpcExporter({
      url: otlpUrl,
      compression: compression === 'gzip' ? CompressionAlgorithm.GZIP : CompressionAlgorithm.NONE,
      timeoutMillis: 10_000,
    });
  }
  const config = {
    url: `${otlpUrl}/v1/traces`,
    compression: compression === 'gzip' ? CompressionAlgorithm.GZIP : CompressionAlgorithm.NONE,
    timeoutMillis: 10_000,
  };
  return format === 'proto' ? new ProtoExporter(config) : new HttpJsonExporter(config);
}

/**
 * A provider for one service. resourceAttrs are merged over the SDK's default resource
 * (telemetry.sdk.*). Returns {provider, memory, recorder, flush(), shutdown()}.
 */
export function makeProvider({ otlpUrl, format = 'proto', compression = 'none', resourceAttrs }) {
  const memory = new InMemorySpanExporter();
  const recorder = new RecordingExporter(otlpExporter(otlpUrl, format, compression));
  const provider = new BasicTracerProvider({
    resource: defaultResource().merge(resourceFromAttributes(resourceAttrs)),
    spanProcessors: [
      new SimpleSpanProcessor(memory),
      /* One request per flush: the batch outlives the test and its size exceeds our traces. */
      new BatchSpanProcessor(recorder, { maxQueueSize: 4096, maxExportBatchSize: 2048, scheduledDelayMillis: 600_000 }),
    ],
  });
  return {
    provider,
    memory,
    recorder,
    /** Flushes, asserts every export succeeded, returns a copy of the recorded ReadableSpans
     * (InMemorySpanExporter forgets them on shutdown). */
    async flush(what) {
      await provider.forceFlush();
      recorder.assertAllSucceeded(what);
      return memory.getFinishedSpans().slice();
    },
    shutdown: () => provider.shutdown(),
  };
}
