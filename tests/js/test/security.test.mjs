/*
 * security.test.mjs: bearer-token access control, TLS (certificate made during the test, checked
 * with curl), slow clients that must not starve normal ones, and names built to break SQL and
 * JSON. Every loop is bounded in count and time.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sleep, startDaemon } from '../lib/daemon.mjs';
import { fetchTrace, request, searchTraces, waitForTrace } from '../lib/http.mjs';
import { jsonRequest, pbRequest } from '../lib/proto.mjs';

const PB = 'application/x-protobuf';
const dirs = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function oneSpanRequest(service, traceId, name = 'op', attrs = []) {
  const now = BigInt(Date.now()) * 1_000_000n;
  return [{ resource: [['service.name', { s: service }]], scopes: [{ name: 'security', version: '1', spans: [
    { traceId, spanId: randomBytes(8), name, kind: 2, start: now, end: now + 1_000_000n, attrs },
  ] }] }];
}

test('bearer tokens: ingest and read scopes, constant answers, health open', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'meshscope-auth-'));
  dirs.push(dir);
  const ingest = randomBytes(24).toString('hex');
  const read = randomBytes(24).toString('hex');
  const both = randomBytes(24).toString('hex');
  const file = path.join(dir, 'tokens');
  await writeFile(file, `# meshscope tokens\ningest=${ingest}\nread=${read}\n${both}\n`);
  const d = await startDaemon({ args: ['--auth-token-file', file], logLevel: 'info' });
  try {
    const traceId = randomBytes(16);
    const body = pbRequest(oneSpanRequest('auth-svc', traceId));
    const post = (token) => request(`${d.otlpUrl}/v1/traces`, {
      method: 'POST', body, headers: { 'content-type': PB, ...(token ? { authorization: `Bearer ${token}` } : {}) },
    });
    const get = (p, token) => request(`${d.httpUrl}${p}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });

    for (const [token, what] of [[null, 'no token'], ['x'.repeat(48), 'wrong token'], [read, 'read token'], [ingest.slice(0, -1), 'truncated token']]) {
      const res = await post(token);
      assert.equal(res.status, 401, `ingest with ${what}`);
      assert.match(String(res.headers['www-authenticate']), /^Bearer/);
    }
    assert.equal((await post(ingest)).status, 200, 'ingest with the ingest token');
    assert.equal((await post(both)).status, 200, 'ingest with the both-scopes token');

    for (const p of ['/api/services', '/metrics', `/api/traces/${traceId.toString('hex')}`]) {
      assert.equal((await get(p)).status, 401, `${p} without token`);
      assert.equal((await get(p, ingest)).status, 401, `${p} with the ingest token`);
    }
    assert.equal((await get('/healthz')).status, 200, '/healthz stays open');
    assert.equal((await get('/readyz')).status, 200, '/readyz stays open');
    const svc = await get('/api/services', read);
    assert.equal(svc.status, 200);
    assert.ok(JSON.parse(svc.body.toString()).data.includes('auth-svc'));
    assert.equal((await get('/metrics', both)).status, 200);
  } finally {
    await d.stop();
    await d.cleanup();
  }
});

test('a bad token file refuses to start, with a message', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'meshscope-auth-'));
  dirs.push(dir);
  const file = path.join(dir, 'tokens');
  await writeFile(file, 'short\n');
  await assert.rejects(startDaemon({ args: ['--auth-token-file', file] }), /16 to 256 characters/);
});

test('TLS on every listener, checked with curl against a certificate made here', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'meshscope-tls-'));
  dirs.push(dir);
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert,
    '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  /* Every listener is TLS here, so the plain-HTTP daemon helper cannot probe readiness: start the
   * binary directly and probe with curl. */
  const { freePorts } = await import('../lib/daemon.mjs');
  const [http, otlp] = await freePorts(2);
  const { spawn } = await import('node:child_process');
  const bin = process.env.MESHSCOPE_BIN;
  const child = spawn(bin, ['--db', path.join(dir, 'db'), '--http', `127.0.0.1:${http}`, '--otlp-http', `127.0.0.1:${otlp}`,
    '--zipkin', 'off', '--otlp-grpc', 'off', '--tls-cert', cert, '--tls-key', key], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b) => (stderr += b));
  const exited = new Promise((r) => child.on('exit', (code) => r(code)));
  const curl = (...args) => {
    try {
      return execFileSync('curl', ['-s', '--max-time', '5', '--cacert', cert, ...args], { encoding: 'utf8' });
    } catch (e) {
      return `curl failed: ${e.status}`;
    }
  };
  try {
    let ok = '';
    for (let i = 0; i < 100 && ok !== 'ready\n'; i++) {
      ok = curl(`https://127.0.0.1:${http}/readyz`);
      if (ok !== 'ready\n') await sleep(100);
    }
    assert.equal(ok, 'ready\n', `no TLS answer: ${stderr}`);
    const traceId = randomBytes(16);
    const bodyFile = path.join(dir, 'req.json');
    await writeFile(bodyFile, JSON.stringify(jsonRequest(oneSpanRequest('tls-svc', traceId))));
    const out = curl('-w', '%{http_code}', '-o', '/dev/null', '-H', 'content-type: application/json',
      '--data-binary', `@${bodyFile}`, `https://localhost:${otlp}/v1/traces`);
    assert.equal(out, '200', 'OTLP/JSON export over TLS');
    let trace = '';
    for (let i = 0; i < 50 && !trace.includes('tls-svc'); i++) {
      trace = curl(`https://127.0.0.1:${http}/api/traces/${traceId.toString('hex')}`);
      if (!trace.includes('tls-svc')) await sleep(100);
    }
    assert.match(trace, /"serviceName":"tls-svc"/);
    /* Plain HTTP to a TLS listener gets no HTTP answer; an unknown CA is refused by curl. */
    assert.doesNotMatch(curl(`http://127.0.0.1:${http}/healthz`), /^ok/);
    let unknownCa = 0;
    try {
      execFileSync('curl', ['-s', '--max-time', '5', `https://127.0.0.1:${http}/healthz`]);
    } catch (e) {
      unknownCa = e.status;
    }
    assert.equal(unknownCa, 60, 'curl must reject the self-signed certificate without --cacert');
  } finally {
    child.kill('SIGTERM');
    assert.equal(await exited, 0, `exit after SIGTERM: ${stderr}`);
  }
});

test('slow clients (slowloris) do not starve normal ones', async () => {
  const d = await startDaemon({ args: ['--idle-timeout', '3s'], logLevel: 'info' });
  const sockets = [];
  try {
    const port = Number(new URL(d.otlpUrl).port);
    const SLOW = 300;
    for (let i = 0; i < SLOW; i++) {
      const s = connect(port, '127.0.0.1');
      s.on('error', () => {});
      s.write('POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 100000\r\n');
      sockets.push(s);
    }
    /* Trickle a header byte now and then on every slow connection, and meanwhile check that
     * normal clients are answered quickly, on the same listener and on the query one. */
    const deadline = Date.now() + 5000;
    let checks = 0;
    while (Date.now() < deadline) {
      for (const s of sockets) s.write('X');
      for (const url of [`${d.otlpUrl}/healthz`, `${d.httpUrl}/api/services`]) {
        const t0 = Date.now();
        const res = await request(url, { timeoutMs: 1000 });
        assert.equal(res.status, 200);
        assert.ok(Date.now() - t0 < 1000, `${url} took ${Date.now() - t0} ms with ${SLOW} slow clients`);
        checks++;
      }
      const traceId = randomBytes(16);
      const res = await request(`${d.otlpUrl}/v1/traces`, { method: 'POST', headers: { 'content-type': PB },
        body: pbRequest(oneSpanRequest('normal-svc', traceId)), timeoutMs: 1000 });
      assert.equal(res.status, 200);
      await sleep(250);
    }
    assert.ok(checks >= 10);
    /* Silent connections are dropped after --idle-timeout. */
    const silent = connect(port, '127.0.0.1');
    const closed = new Promise((r) => silent.on('close', r));
    silent.on('error', () => {});
    silent.write('GET /healthz HTTP/1.1\r\n');
    const t0 = Date.now();
    await Promise.race([closed, sleep(10_000)]);
    const waited = Date.now() - t0;
    assert.ok(waited >= 2500 && waited < 9000, `silent connection closed after ${waited} ms (idle timeout 3 s)`);
  } finally {
    for (const s of sockets) s.destroy();
    await d.stop();
    await d.cleanup();
  }
});

test('a body trickling in slower than --request-timeout loses its connection', async () => {
  const d = await startDaemon({ args: ['--request-timeout', '2s', '--idle-timeout', '30s'], logLevel: 'info' });
  try {
    const port = Number(new URL(d.otlpUrl).port);
    const s = connect(port, '127.0.0.1');
    s.on('error', () => {});
    const closed = new Promise((r) => s.on('close', r));
    s.write('POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n');
    const t0 = Date.now();
    let isClosed = false;
    closed.then(() => (isClosed = true));
    /* One byte every 300 ms: never idle for --idle-timeout, never complete. */
    for (let i = 0; i < 40 && !isClosed; i++) {
      s.write('x');
      await sleep(300);
    }
    const waited = Date.now() - t0;
    assert.ok(isClosed, 'the trickling connection was never closed');
    assert.ok(waited >= 1800 && waited < 6000, `closed after ${waited} ms (request timeout 2 s)`);
    const m = (await request(`${d.httpUrl}/metrics`)).body.toString();
    assert.match(m, /meshscope_ingest_requests_rejected_total\{protocol="otlp_http_protobuf",reason="timeout"\} 1\n/);
    assert.equal((await request(`${d.otlpUrl}/healthz`)).status, 200);
  } finally {
    await d.stop();
    await d.cleanup();
  }
});

test('names built to break SQL and JSON are stored and searched as plain data', async () => {
  const d = await startDaemon({ logLevel: 'info' });
  try {
    const hostile = [
      "x'); DROP TABLE chunks; --",
      'svc" OR 1=1 --',
      '"},{"traceID":"00","spans":[]}',
      '\\u0000\\", \'\n\t</script><script>alert(1)</script>',
      'Robert\'); DELETE FROM services WHERE (\'1\'=\'1',
    ];
    for (const [i, name] of hostile.entries()) {
      const traceId = randomBytes(16);
      const res = await request(`${d.otlpUrl}/v1/traces`, { method: 'POST', headers: { 'content-type': PB },
        body: pbRequest(oneSpanRequest(name, traceId, name, [[name, { s: name }], ['case', { i: BigInt(i) }]])) });
      assert.equal(res.status, 200);
      const t = await waitForTrace(d.httpUrl, traceId.toString('hex'), 1);
      assert.equal(t.spans[0].operationName, name);
      assert.equal(t.processes[t.spans[0].processID].serviceName, name);
      assert.equal(t.spans[0].tags.find((x) => x.key === name)?.value, name);
      /* Search by the hostile service, operation and tag (both tag forms). */
      const found = await searchTraces(d.httpUrl, [['service', name], ['operation', name], ['tags', JSON.stringify({ [name]: name })]]);
      assert.deepEqual(found.map((x) => x.traceID), [traceId.toString('hex')], `search for ${JSON.stringify(name)}`);
      const ops = await request(`${d.httpUrl}/api/services/${encodeURIComponent(name)}/operations`);
      assert.equal(ops.status, 200);
      assert.deepEqual(JSON.parse(ops.body.toString()).data, [name]);
    }
    const svcs = JSON.parse((await request(`${d.httpUrl}/api/services`)).body.toString()).data;
    for (const name of hostile) assert.ok(svcs.includes(name), `service ${JSON.stringify(name)} listed`);
    assert.equal(await fetchTrace(d.httpUrl, randomBytes(16).toString('hex')), null);
  } finally {
    await d.stop();
    await d.cleanup();
  }
});
