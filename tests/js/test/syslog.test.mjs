/*
 * syslog.test.mjs: the syslog receiver (--syslog) over raw sockets, against the real daemon.
 *
 * 1. Framing and headers on one TCP connection: RFC 6587 octet counting and newline framing
 *    (LF, CR LF, NUL), RFC 5424 (with "-" and [...] structured data, a BOM) and RFC 3164 headers.
 * 2. HAProxy fixture lines as HAProxy sends them: RFC 3164 over UDP (its default, no hostname)
 *    and RFC 5424 (`format rfc5424`), JSON bodies as HAProxy 3's %{+json}o writes them (numbers
 *    unquoted, -1 for timers never reached) and as the README's 2.6 hand-written format does.
 * 3. The bad-input table: each bad frame is refused with its reason counted in
 *    meshscope_syslog_rejected_total, and the good messages after it are stored; the daemon keeps
 *    serving.
 * 4. Backpressure: a TCP burst into a 1 MiB ingest queue is stored whole (TCP waits, never drops).
 * 5. --syslog validation, a taken port, and the idle timeout (an incomplete frame is truncated).
 * Two listeners: one with service=edge (nginx-style records), one without (HAProxy records name
 * their service through frontend_name).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { startDaemon } from '../lib/daemon.mjs';
import { getJson, poll, request } from '../lib/http.mjs';

let d;
let edgePort; /* service=edge */
let plainPort; /* no service */

before(async () => {
  d = await startDaemon({ logLevel: 'info', args: ['--syslog', '127.0.0.1:0,service=edge 127.0.0.1:0'] });
  const ports = [...d.stderr().matchAll(/syslog: listening on \S+ \(port (\d+)/g)].map((m) => Number(m[1]));
  assert.equal(ports.length, 2, d.stderr());
  [edgePort, plainPort] = ports;
});

after(async () => {
  if (d) {
    await d.stop();
    await d.cleanup();
  }
});

const run = randomBytes(4).toString('hex');
let seq = 0;
const newId = (what) => `${what}-${run}-${++seq}`;

/** An nginx line (README log_format: every value a string). */
function nginxLine(id, { status = 200, upstream = 'reviews', path = '/reviews/1' } = {}) {
  const now = Date.now() / 1000;
  return JSON.stringify({
    start_time: new Date(now * 1000 - 12).toISOString(),
    msec: now.toFixed(3),
    request_time: '0.012',
    upstream_response_time: '0.010',
    method: 'GET',
    path,
    protocol: 'HTTP/1.1',
    response_code: String(status),
    bytes_received: '120',
    bytes_sent: '512',
    upstream_name: upstream,
    upstream_host: '127.0.0.1:9080',
    upstream_status: String(status),
    request_id: id,
    traceparent: '',
    authority: 'shop.example',
    user_agent: 'curl/8',
    x_forwarded_for: '',
    downstream_remote_address: '127.0.0.1:50000',
  });
}

/** HAProxy 3's %{+json}o output for the README's log-format (numbers unquoted). */
function haproxyLine(id, { status = 200, tsc = '--', tr = 7, frontend = 'web', backend = 'api' } = {}) {
  return JSON.stringify({
    start_time_ms: Date.now() - 20,
    frontend_name: frontend,
    backend_name: backend,
    method: 'POST',
    path: '/api/orders',
    protocol: 'HTTP/1.1',
    response_code: status,
    duration: 9,
    upstream_service_time: tr,
    bytes_received: 300,
    bytes_sent: 1200,
    upstream_host: '10.1.2.3',
    request_id: id,
    traceparent: null,
    response_flags: tsc,
  }).replace(/":/g, '": ').replace(/,"/g, ', "'); /* HAProxy's spacing */
}

const ts5424 = () => new Date().toISOString();
const ts3164 = () => {
  const t = new Date();
  const mon = 'Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec'.split(' ')[t.getUTCMonth()];
  const p = (n) => String(n).padStart(2, '0');
  return `${mon} ${String(t.getUTCDate()).padStart(2, ' ')} ${p(t.getUTCHours())}:${p(t.getUTCMinutes())}:${p(t.getUTCSeconds())}`;
};
const rfc5424 = (body, { app = 'nginx', sd = '-', bom = false } = {}) =>
  `<190>1 ${ts5424()} web-1 ${app} 4242 - ${sd} ${bom ? '\uFEFF' : ''}${body}`;
const rfc3164 = (body, { host = 'web-1', tag = 'nginx' } = {}) => `<190>${ts3164()} ${host ? `${host} ` : ''}${tag}: ${body}`;
const octet = (msg) => {
  const b = Buffer.isBuffer(msg) ? msg : Buffer.from(msg);
  return Buffer.concat([Buffer.from(`${b.length} `), b]);
};

/** Writes chunks on one TCP connection (each a Buffer or string), then ends it; resolves once
 * the server has closed it too. Bounded: a server that stops reading fails the test. */
function tcpSend(port, chunks, timeoutMs = 60_000) {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port }, () => {
      for (const c of chunks) s.write(c);
      s.end();
    });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`TCP send to ${port} not finished within ${timeoutMs} ms`));
    }, timeoutMs);
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
    s.resume();
  });
}

async function udpSend(port, messages) {
  const s = createSocket('udp4');
  for (const m of messages) await new Promise((r, j) => s.send(Buffer.from(m), port, '127.0.0.1', (e) => (e ? j(e) : r())));
  s.close();
}

async function metricsText() {
  return (await request(`${d.httpUrl}/metrics`)).body.toString('utf8');
}
function metric(text, name, labels = []) {
  return text
    .split('\n')
    .filter((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && labels.every((x) => l.includes(x)))
    .reduce((s, l) => s + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

/**
 * Polls /api/logs?requestId= until each id has its one record; resolves {id: record}. A second
 * record under one id fails at once (stored twice).
 */
async function records(ids) {
  const out = {};
  await poll(`records ${ids.join(', ')}`, async () => {
    for (const id of ids.filter((x) => !out[x])) {
      const json = await getJson(`${d.httpUrl}/api/logs?requestId=${encodeURIComponent(id)}`);
      assert.ok(json.total <= 1, `${id}: stored twice`);
      if (json.total === 1) out[id] = json.data[0];
    }
    return ids.every((id) => out[id]);
  });
  for (const id of ids) {
    const again = await getJson(`${d.httpUrl}/api/logs?requestId=${encodeURIComponent(id)}`);
    assert.equal(again.total, 1, `${id}: stored twice`);
  }
  return out;
}

test('TCP framing and RFC 5424 / RFC 3164 headers: every message stored once', async () => {
  const ids = Array.from({ length: 8 }, () => newId('frame'));
  const msgs = [
    octet(rfc5424(nginxLine(ids[0]))),
    octet(rfc5424(nginxLine(ids[1]), { sd: '[meta@32473 k="v \\"q\\" \\]"][x@1]', bom: true })),
    `${rfc3164(nginxLine(ids[2]))}\n`,
    `${rfc5424(nginxLine(ids[3]))}\r\n`,
    `${rfc3164(nginxLine(ids[4]), { host: '' })}\0`,
    /* octet counting again after newline framing, split across writes */
    ...(() => {
      const f = octet(rfc5424(nginxLine(ids[5])));
      return [f.subarray(0, 3), f.subarray(3, 40), f.subarray(40)];
    })(),
    `${nginxLine(ids[6])}\n`, /* no header at all */
    rfc3164(nginxLine(ids[7])), /* the last frame, unterminated: taken at EOF */
  ];
  await tcpSend(edgePort, msgs);
  const got = await records(ids);
  for (const id of ids) {
    assert.equal(got[id].service, 'edge', `${id}: the listener's service`);
    assert.equal(got[id].path, '/reviews/1');
    assert.equal(got[id].response_code, 200);
    assert.equal(JSON.parse(got[id].line).request_id, id, 'the stored line is the JSON body');
  }
});

test('HAProxy lines: RFC 3164 over UDP and RFC 5424 over TCP', async () => {
  const udpIds = [newId('hap-udp'), newId('hap-udp'), newId('hap-udp')];
  const tcpIds = [newId('hap-tcp'), newId('hap-tcp')];
  await udpSend(plainPort, [
    `<134>${ts3164()} haproxy[1234]: ${haproxyLine(udpIds[0])}`,
    `<134>${ts3164()} haproxy[1234]: ${haproxyLine(udpIds[1], { status: 503, tsc: 'sC', tr: -1 })}`,
    `<134>${ts3164()} lb-1 haproxy[1234]: ${haproxyLine(udpIds[2], { status: 200, tsc: 'CD' })}`,
  ]);
  await tcpSend(plainPort, [
    octet(`<134>1 ${ts5424()} lb-1 haproxy 1234 - - ${haproxyLine(tcpIds[0])}`),
    octet(`<134>1 ${ts5424()} - haproxy 1234 - - ${haproxyLine(tcpIds[1], { frontend: 'admin', backend: 'ops' })}`),
  ]);
  const got = await records([...udpIds, ...tcpIds]);
  const r0 = got[udpIds[0]];
  assert.equal(r0.service, 'web', 'frontend_name is the reporting service');
  assert.equal(r0.method, 'POST');
  assert.equal(r0.response_code, 200);
  assert.equal(r0.duration_ms, 9);
  assert.equal(r0.response_flags, '-', 'HAProxy "--" is a normal end');
  assert.equal(r0.direction, 'outbound');
  assert.equal(got[udpIds[1]].response_code, 503);
  assert.equal(got[tcpIds[1]].service, 'admin');
  /* RED: frontend -> backend. */
  const m = await metricsText();
  assert.equal(
    metric(m, 'istio_requests_total', ['source_workload="web"', 'destination_service="api"', 'response_code="503"']),
    1,
  );
  assert.equal(metric(m, 'istio_requests_total', ['source_workload="admin"', 'destination_service="ops"']), 1);
  /* a termination state other than "--" marks the record failed */
  const errs = await getJson(`${d.httpUrl}/api/logs?errors=true&service=web&limit=1000`);
  const errIds = errs.data.map((r) => r.request_id).filter((id) => udpIds.includes(id));
  assert.deepEqual(errIds.sort(), [udpIds[1], udpIds[2]].sort());
});

test('bad input: each refusal counted by reason, the stream goes on, good messages after it stored', async () => {
  const before = await metricsText();
  const reasons = ['bad_length', 'truncated', 'too_large', 'bad_header', 'invalid_utf8', 'not_json', 'missing_field'];
  const base = Object.fromEntries(reasons.map((r) => [r, metric(before, 'meshscope_syslog_rejected_total', [`reason="${r}"`])]));
  const good = [];
  const ok = () => {
    const id = newId('after-bad');
    good.push(id);
    return octet(rfc5424(nginxLine(id)));
  };
  const big = 'x'.repeat(70_000);
  const badUtf8 = Buffer.concat([Buffer.from(rfc5424(nginxLine(newId('utf8')).replace('curl/8', 'AB'))), Buffer.alloc(0)]);
  /* replace "AB" in the user agent by an invalid byte sequence */
  const at = badUtf8.indexOf('AB');
  badUtf8[at] = 0xff;
  badUtf8[at + 1] = 0xfe;
  /* [reason, chunks] on one connection each; a good message follows on the same stream */
  const table = [
    ['bad_length', ['12x <190>1 garbage\n', ok()]],
    ['bad_length', ['0 \n', ok()]],
    ['too_large', [Buffer.from(`70000 ${big}`), ok()]],
    ['too_large', [`<190>1 ${big}\n`, ok()]],
    ['bad_header', [octet('<999>1 - - - - - - {}'), ok()]],
    ['bad_header', [octet('<190>1 2026-13-45T99:00:00Z h a p m - {"x":1}'), ok()]],
    ['bad_header', [octet('<190>1 - h a p m [unterminated {"x":1}'), ok()]],
    ['invalid_utf8', [octet(badUtf8), ok()]],
    ['not_json', [octet(rfc5424('GET /index.html 200')), ok()]],
    ['not_json', [octet(rfc5424('{"start_time": "2026-01-01T00:00:00Z", "method": ')), ok()]],
    ['missing_field', [octet(rfc5424('{"method":"GET","path":"/x"}')), ok()]],
  ];
  for (const [, chunks] of table) await tcpSend(edgePort, chunks);
  /* a truncated octet-counted frame: the connection ends inside it */
  await tcpSend(edgePort, [ok(), Buffer.from(`500 <190>1 ${ts5424()} h nginx - - - {"start_time"`)]);
  table.push(['truncated', []]);
  /* UDP: non-JSON and a bad header, then a good one */
  const udpGood = newId('udp-after-bad');
  await udpSend(edgePort, [rfc3164('not json at all'), '<300>oops', rfc3164(nginxLine(udpGood))]);
  good.push(udpGood);

  await records(good);
  const want = { ...base };
  for (const [r] of table) want[r] += 1;
  want.not_json += 1;
  want.bad_header += 1;
  const after = await poll('the rejection counters', async () => {
    const m = await metricsText();
    return reasons.every((r) => metric(m, 'meshscope_syslog_rejected_total', [`reason="${r}"`]) >= want[r]) ? m : null;
  });
  for (const r of reasons) assert.equal(metric(after, 'meshscope_syslog_rejected_total', [`reason="${r}"`]), want[r], `reason ${r}`);
  /* nothing of a refused message is stored */
  const all = await getJson(`${d.httpUrl}/api/logs?limit=10000`);
  assert.equal(all.data.filter((r) => /^utf8-/.test(r.request_id ?? '')).length, 0);
  assert.equal(all.data.filter((r) => r.path === '/x').length, 0);
  assert.equal((await request(`${d.httpUrl}/readyz`)).status, 200, 'the daemon keeps serving');
  assert.equal(metric(after, 'meshscope_syslog_connections'), 0, 'every connection closed');
});

test('--syslog values are checked at start', async () => {
  const { runBinary } = await import('../lib/daemon.mjs');
  for (const bad of ['127.0.0.1', '127.0.0.1:5514,colour=red', '127.0.0.1:99999', ',service=x']) {
    const r = await runBinary(['--syslog', bad, '--db', ':memory:']);
    assert.equal(r.code, 2, `--syslog '${bad}': exit ${r.code}, ${r.stderr}`);
    assert.match(r.stderr, /--syslog/);
  }
  /* A taken port fails the start (exit 1), naming the address. */
  const { createServer } = await import('node:net');
  const srv = createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const addr = `127.0.0.1:${srv.address().port}`;
  try {
    const r = await runBinary(['--syslog', addr, '--db', `${d.dir}/taken.db`, '--http', 'off', '--otlp-http', 'off', '--zipkin', 'off']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`syslog: cannot bind ${addr}`));
  } finally {
    await new Promise((r) => srv.close(r));
  }
});

test('backpressure: a TCP burst into a 1 MiB queue is stored whole, nothing dropped', async (t) => {
  const small = await startDaemon({ logLevel: 'info', args: ['--syslog', '127.0.0.1:0,service=burst', '--queue-size', '1MiB'] });
  try {
    const port = Number(/syslog: listening on \S+ \(port (\d+)/.exec(small.stderr())[1]);
    const N = 20_000; /* ~30 MB of decoded records: many times the queue */
    const frames = [];
    for (let i = 0; i < N; i++) frames.push(octet(rfc5424(nginxLine(`burst-${run}-${i}`, { path: `/burst/${i}` }))));
    await tcpSend(port, [Buffer.concat(frames)]);
    const m = await poll(
      `${N} accepted messages`,
      async () => {
        const text = (await request(`${small.httpUrl}/metrics`)).body.toString('utf8');
        return metric(text, 'meshscope_syslog_messages_total', ['transport="tcp"', 'outcome="accepted"']) >= N ? text : null;
      },
      { timeoutMs: 60_000, intervalMs: 200, attempts: 1000 },
    );
    assert.equal(metric(m, 'meshscope_syslog_messages_total', ['transport="tcp"', 'outcome="accepted"']), N);
    assert.equal(metric(m, 'meshscope_syslog_messages_total', ['outcome="dropped"']), 0);
    assert.equal(metric(m, 'meshscope_syslog_messages_total', ['outcome="rejected"']), 0);
    const stored = await poll(
      `${N} stored records`,
      async () => {
        const json = await getJson(`${small.httpUrl}/api/logs?limit=10000&service=burst`);
        const text = (await request(`${small.httpUrl}/metrics`)).body.toString('utf8');
        return json.data.length === 10000 && metric(text, 'istio_requests_total', ['source_workload="burst"']) === N ? json : null;
      },
      { timeoutMs: 60_000, intervalMs: 200, attempts: 1000 },
    );
    assert.equal(new Set(stored.data.map((r) => r.request_id)).size, 10000, 'no duplicate among the newest 10,000');
    t.diagnostic(`the queue was full at times (TCP reading paused): ${/TCP reading paused/.test(small.stderr())}`);
    await small.stop();
  } finally {
    await small.cleanup();
  }
});

test('idle timeout: a silent connection is closed, its incomplete frame counted as truncated', async () => {
  const idle = await startDaemon({ logLevel: 'info', args: ['--syslog', '127.0.0.1:0', '--idle-timeout', '1s'] });
  try {
    const port = Number(/syslog: listening on \S+ \(port (\d+)/.exec(idle.stderr())[1]);
    const id = newId('idle');
    const closed = new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.write(octet(rfc5424(nginxLine(id)))); /* one whole frame, then half of one */
        s.write('300 <190>1 - h nginx - - - {"start_time"');
      });
      s.on('error', reject);
      s.on('close', resolve); /* the server closes it: this test never ends the socket */
      s.resume();
    });
    await closed;
    const m = await poll('the truncated count', async () => {
      const text = (await request(`${idle.httpUrl}/metrics`)).body.toString('utf8');
      return metric(text, 'meshscope_syslog_rejected_total', ['reason="truncated"']) === 1 ? text : null;
    });
    assert.equal(metric(m, 'meshscope_syslog_connections'), 0);
    const logs = await getJson(`${idle.httpUrl}/api/logs?limit=10`);
    assert.deepEqual(logs.data.map((r) => r.request_id), [id], 'the whole frame before it is stored');
    await idle.stop();
  } finally {
    await idle.cleanup();
  }
});
