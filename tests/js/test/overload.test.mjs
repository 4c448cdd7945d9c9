/*
 * overload.test.mjs: bounded under overload. meshscope-loadgen offers far more than the
 * sustainable rate (64 connections sending 500-span batches as fast as they are answered, for
 * 30 s, while the writer's queue is small); meanwhile the test samples the daemon's RSS and checks
 * that /healthz and a query answer within a second. RSS must stay under the memory bound the
 * daemon derives from its limits (meshscope_memory_bound_bytes, README: Guarantees and limits),
 * refusals must be 503 + Retry-After and counted, and everything answered 200 must be stored.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { sleep, startDaemon } from '../lib/daemon.mjs';
import { request } from '../lib/http.mjs';

const LOADGEN = path.join(process.env.MESHSCOPE_BUILD ?? path.resolve(import.meta.dirname, '../../../build'), 'tests/meshscope-loadgen');
const SECONDS = 30;

function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) * 1024;
}

function metric(text, name) {
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(name)) sum += Number(line.split(' ').pop());
  return sum;
}

test('RSS stays under the derived bound and the daemon keeps answering under overload', async () => {
  const d = await startDaemon({ args: ['--queue-size', '8MiB', '--max-body', '2MiB', '--http-threads', '2'], logLevel: 'info' });
  try {
    const m0 = (await request(`${d.httpUrl}/metrics`)).body.toString();
    const bound = metric(m0, 'meshscope_memory_bound_bytes');
    assert.ok(bound > 64 * 1024 * 1024, `memory bound ${bound}`);

    const lg = spawn(LOADGEN, ['--target', new URL(d.otlpUrl).host, '--threads', '64', '--spans-per-request', '500',
      '--duration', String(SECONDS), '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    lg.stdout.on('data', (b) => (out += b));
    const lgDone = new Promise((r) => lg.on('exit', (code) => r(code)));

    let peak = 0;
    let slowest = 0;
    let probes = 0;
    const end = Date.now() + (SECONDS + 5) * 1000;
    let finished = false;
    lgDone.then(() => (finished = true));
    while (!finished && Date.now() < end) {
      peak = Math.max(peak, rssBytes(d.pid));
      for (const p of ['/healthz', '/api/services']) {
        const t0 = Date.now();
        const res = await request(`${d.httpUrl}${p}`, { timeoutMs: 2000 });
        assert.equal(res.status, 200, `${p} under overload`);
        slowest = Math.max(slowest, Date.now() - t0);
        probes++;
      }
      await sleep(250);
    }
    assert.equal(await lgDone, 0, `loadgen failed: ${out}`);
    const r = JSON.parse(out);
    const m = (await request(`${d.httpUrl}/metrics`)).body.toString();
    const refused = metric(m, 'meshscope_ingest_requests_rejected_total{protocol="otlp_http_protobuf",reason="queue_full"}') +
      metric(m, 'meshscope_ingest_requests_rejected_total{protocol="otlp_http_protobuf",reason="body_budget"}');
    console.log(`# peak RSS ${peak >> 20} MiB, bound ${bound >> 20} MiB, slowest probe ${slowest} ms (${probes} probes), ` +
      `accepted ${r.accepted}, 503 ${r.retried}, ${r.spans_per_second} spans/s`);
    assert.ok(probes >= 20, `only ${probes} probes`);
    assert.ok(slowest < 1000, `a probe took ${slowest} ms`);
    assert.ok(peak < bound, `peak RSS ${peak} over the bound ${bound}`);
    assert.ok(r.retried > 0, 'the offered load never exceeded what meshscope takes: not an overload');
    assert.equal(refused, r.retried, '503s are counted as refusals');
    assert.ok(r.accepted > 0);
    /* What was answered 200 is stored (the loadgen's spans all go through one counter). */
    const stored = metric(m, 'meshscope_spans_stored_total');
    assert.ok(stored >= r.spans_accepted, `stored ${stored} < acknowledged ${r.spans_accepted}`);
  } finally {
    await d.stop();
    await d.cleanup();
  }
});
