/*
 * durability.test.mjs: acknowledged means durable.
 *
 * 1. Crash rounds: concurrent clients export spans and record every trace whose request was
 *    answered 200; the daemon is killed with SIGKILL at a random moment, restarted on the same
 *    database, several times. Afterwards every acknowledged span is there, SQLite's
 *    integrity_check says ok, and the daemon takes traffic again.
 * 2. Disk full: the database lives on a small tmpfs filled up by another file. Ingest answers 503
 *    with Retry-After (never 200 for what it could not store, and a refused request leaves
 *    nothing behind); when space returns, ingest recovers by itself.
 *
 * Every loop is bounded in count and time.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sleep, startDaemon } from '../lib/daemon.mjs';
import { fetchTrace, request } from '../lib/http.mjs';
import { pbRequest } from '../lib/proto.mjs';

const PB = 'application/x-protobuf';
const SPANS_PER_TRACE = 3;
const TRACES_PER_REQUEST = 20;

/* One request: TRACES_PER_REQUEST traces of SPANS_PER_TRACE spans each, fresh random ids. */
function makeRequest(service) {
  const now = BigInt(Date.now()) * 1_000_000n;
  const traces = [];
  const spans = [];
  for (let t = 0; t < TRACES_PER_REQUEST; t++) {
    const traceId = randomBytes(16);
    traces.push(traceId.toString('hex'));
    const root = randomBytes(8);
    for (let s = 0; s < SPANS_PER_TRACE; s++) {
      spans.push({
        traceId,
        spanId: s === 0 ? root : randomBytes(8),
        parentSpanId: s === 0 ? undefined : root,
        name: `op-${s}`,
        kind: s === 0 ? 2 : 3,
        start: now,
        end: now + 1_000_000n,
        attrs: [['i', { i: BigInt(s) }], ['pad', { s: 'x'.repeat(200) }]],
      });
    }
  }
  const body = pbRequest([{ resource: [['service.name', { s: service }]], scopes: [{ name: 'durability', version: '1', spans }] }]);
  return { body, traces };
}

/* Sends requests until stop() is called; resolves with the acknowledged and the refused traces. */
function client(url, service) {
  let running = true;
  const acked = [];
  const refused = [];
  const statuses = {};
  const done = (async () => {
    for (let i = 0; running && i < 100_000; i++) {
      const { body, traces } = makeRequest(service);
      let res;
      try {
        res = await request(`${url}/v1/traces`, { method: 'POST', headers: { 'content-type': PB }, body, timeoutMs: 5000 });
      } catch {
        await sleep(20); /* connection refused or reset: the daemon is down */
        continue;
      }
      statuses[res.status] = (statuses[res.status] ?? 0) + 1;
      if (res.status === 200) acked.push(...traces);
      else refused.push({ status: res.status, retryAfter: res.headers['retry-after'], traces });
      if (res.status !== 200) await sleep(20);
    }
  })();
  return { acked, refused, statuses, stop: async () => { running = false; await done; return { acked, refused, statuses }; } };
}

function integrityCheck(db) {
  return execFileSync('sqlite3', [db, 'PRAGMA integrity_check;'], { encoding: 'utf8' }).trim();
}

async function assertAllPresent(httpUrl, traces, what) {
  for (const id of traces) {
    const t = await fetchTrace(httpUrl, id);
    assert.ok(t, `${what}: acknowledged trace ${id} missing`);
    assert.equal(t.spans.length, SPANS_PER_TRACE, `${what}: trace ${id} incomplete`);
  }
}

const dirs = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

test('every acknowledged span survives kill -9 rounds; integrity ok; traffic resumes', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'meshscope-crash-'));
  dirs.push(dir);
  const db = path.join(dir, 'meshscope.db');
  const acked = [];
  const ROUNDS = 4;
  for (let round = 0; round < ROUNDS; round++) {
    const d = await startDaemon({ dir, db, logLevel: 'info' });
    const clients = [0, 1, 2, 3].map((i) => client(d.otlpUrl, `crash-svc-${i}`));
    await sleep(300 + randomInt(900)); /* a random moment under load */
    process.kill(d.pid, 'SIGKILL');
    await sleep(50);
    for (const c of clients) acked.push(...(await c.stop()).acked);
    await d.cleanup();
  }
  assert.ok(acked.length > 100, `load too light to test anything: ${acked.length} acknowledged traces`);

  assert.equal(integrityCheck(db), 'ok');
  const d = await startDaemon({ dir, db, logLevel: 'info' });
  try {
    await assertAllPresent(d.httpUrl, acked, 'after kill -9 rounds');
    const { body, traces } = makeRequest('crash-after');
    const res = await request(`${d.otlpUrl}/v1/traces`, { method: 'POST', headers: { 'content-type': PB }, body });
    assert.equal(res.status, 200, 'daemon takes traffic again');
    await assertAllPresent(d.httpUrl, traces, 'after restart');
  } finally {
    await d.stop();
    await d.cleanup();
  }
});

/* The disk-full test needs a filesystem of its own: a small tmpfs (root, or sudo without a
 * password, as `make test` itself needs for its apt step). */
function mountTmpfs(dir, size) {
  const asRoot = process.getuid && process.getuid() === 0;
  const cmd = asRoot ? ['mount'] : ['sudo', '-n', 'mount'];
  execFileSync(cmd[0], [...cmd.slice(1), '-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  return () => execFileSync(asRoot ? 'umount' : 'sudo', asRoot ? [dir] : ['-n', 'umount', dir]);
}

test('disk full: 503 + Retry-After, nothing half-stored, recovers when space returns', async () => {
  const base = await mkdtemp(path.join(tmpdir(), 'meshscope-full-'));
  dirs.push(base);
  const mnt = path.join(base, 'fs');
  await mkdir(mnt);
  const umount = mountTmpfs(mnt, '24m');
  let d;
  try {
    const db = path.join(mnt, 'meshscope.db');
    d = await startDaemon({ dir: mnt, db, logLevel: 'info' });
    /* Leave ~3 MiB free: a few hundred requests fill it. */
    const filler = path.join(mnt, 'filler');
    await writeFile(filler, Buffer.alloc(20 * 1024 * 1024));

    const acked = [];
    const refused = [];
    const c = client(d.otlpUrl, 'full-svc');
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      await sleep(200);
      const m = await request(`${d.httpUrl}/metrics`);
      if (/meshscope_spans_rejected_total\{protocol="otlp_http_protobuf",reason="store_failed"\} [1-9]/.test(m.body.toString())) break;
    }
    await sleep(500);
    let r = await c.stop();
    acked.push(...r.acked);
    refused.push(...r.refused);
    const full = refused.filter((x) => x.status === 503);
    assert.ok(full.length > 0, `no 503 while the disk was full (statuses ${JSON.stringify(r.statuses)})`);
    for (const x of full) assert.ok(Number(x.retryAfter) >= 1, '503 without Retry-After');
    assert.ok(d.alive(), 'daemon died on a full disk');
    const h = await request(`${d.httpUrl}/healthz`);
    assert.equal(h.status, 200);

    /* Space returns: ingest recovers by itself (bounded wait). */
    await rm(filler);
    const c2 = client(d.otlpUrl, 'full-svc');
    for (const until = Date.now() + 20_000; Date.now() < until && c2.acked.length === 0;) await sleep(100);
    await sleep(500);
    r = await c2.stop();
    assert.ok(r.acked.length > 0, `no 200 after space returned (statuses ${JSON.stringify(r.statuses)})`);
    acked.push(...r.acked);

    /* Acknowledged = stored; refused (503) = not stored at all. */
    await assertAllPresent(d.httpUrl, acked, 'disk full');
    for (const x of full.slice(0, 50)) {
      for (const id of x.traces) {
        assert.equal(await fetchTrace(d.httpUrl, id), null, `trace ${id} of a refused request was (partly) stored`);
      }
    }
    await d.stop();
    assert.equal(integrityCheck(db), 'ok');
  } finally {
    if (d) await d.cleanup();
    umount();
  }
});
